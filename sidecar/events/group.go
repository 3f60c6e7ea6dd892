package events

import (
	"net/url"

	"github.com/redis/go-redis/v9"
)

// Groups, as KAR's consumer groups: the subscriptions of one topic with the
// same group (default: the subscription id, as in KAR) are the members of
// one group, and the group is what a runner leases and delivers. It reads
// the topic once, from the group's committed offsets, one event at a time,
// and hands each event to one member: member (partition + offset +
// attempt - 1) mod members, in the order of their fields — round robin
// over the events, the same member again when an event is redelivered
// after a runner died, and the next member when an attempt failed (a
// member whose actor is gone does not hold the group's events back).
// Different groups each get every event; a group of one is a subscription
// as it was before groups.
//
// A group lives in Redis as one hash (groupKey of its unit name) beside the
// subscriptions hash, changed only by scripts, so that membership and
// position move together:
//
//	"<partition>"  the next offset to deliver (sarama.OffsetOldest: the oldest)
//	"p"            "1" once the group has a position
//	"m/<field>"    "1" for each member subscription
//	"n"            the number of members
//	"v"            the version: incremented by every change of the members
//
// A new group starts where its first subscription asks (the newest offsets
// when it was created, or the oldest); a subscription joining a group takes
// the group's position; a group whose last member goes is deleted with its
// lease. A runner confirms the version with each commit and lease renewal:
// when it changed, it reloads the members before its next delivery.

// group is a subscription's group: its own id unless it names one.
func (s Subscription) group() string {
	if s.Group != "" {
		return s.Group
	}
	return s.ID
}

// unit names the group of s on its topic (topic and group, path-escaped,
// so that no two pairs share a name, nor share one with a subscription's
// three-part field).
func (s Subscription) unit() string { return unitOf(s.Topic, s.group()) }

func unitOf(topic, group string) string { return url.PathEscape(topic) + "/" + url.PathEscape(group) }

// member is one subscription of a group, as stored.
type member struct {
	field, raw string
	sub        Subscription
	unit       string // sub.unit(), as the runner parsed it
}

// pick chooses the member that receives attempt (1, 2, ...) of the record
// at partition/offset.
func pick(members []member, partition int32, offset int64, attempt int) member {
	n := int64(len(members))
	i := (int64(partition) + offset + int64(attempt-1)) % n
	if i < 0 {
		i += n
	}
	return members[i]
}

// putScript stores subscription ARGV[2] at field ARGV[1] of KEYS[1] and
// makes it a member of the group KEYS[2], leaving its previous group KEYS[3]
// (lease KEYS[4]) when ARGV[3] says it moved. A group without members
// starts at the offsets ARGV[4..] (partition, offset pairs) or, for a
// subscription that did not move, at its offsets from before groups
// (KEYS[5]); KEYS[5] and KEYS[6] (its old lease) are deleted. Returns 1 for
// a new subscription.
var putScript = redis.NewScript(`
local created = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local m = 'm/' .. ARGV[1]
if ARGV[3] == '1' and KEYS[3] ~= KEYS[2] and redis.call('HDEL', KEYS[3], m) == 1 then
  redis.call('HINCRBY', KEYS[3], 'v', 1)
  if redis.call('HINCRBY', KEYS[3], 'n', -1) <= 0 then redis.call('DEL', KEYS[3], KEYS[4]) end
end
if tonumber(redis.call('HGET', KEYS[2], 'n') or '0') <= 0 then
  redis.call('DEL', KEYS[2])
  if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[5]) == 1 then
    local kv = redis.call('HGETALL', KEYS[5])
    for i = 1, #kv, 2 do redis.call('HSET', KEYS[2], kv[i], kv[i+1]) end
    redis.call('HSET', KEYS[2], 'p', '1')
  elseif #ARGV > 3 then
    for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i+1]) end
    redis.call('HSET', KEYS[2], 'p', '1')
  end
end
if redis.call('HSETNX', KEYS[2], m, '1') == 1 then redis.call('HINCRBY', KEYS[2], 'n', 1) end
redis.call('HINCRBY', KEYS[2], 'v', 1)
redis.call('DEL', KEYS[5], KEYS[6])
return created`)

// removeScript deletes the subscriptions ARGV[2i-1] of KEYS[1] if each
// still reads ARGV[2i] (else nothing, -1: the caller reads again), takes
// each out of its group KEYS[4i-2] (deleted with its lease KEYS[4i-1] when
// it has no member left) and deletes its keys from before groups
// (KEYS[4i], KEYS[4i+1]). Returns how many subscriptions it deleted.
var removeScript = redis.NewScript(`
local n = #ARGV / 2
for i = 1, n do
  local cur = redis.call('HGET', KEYS[1], ARGV[2*i-1])
  if cur and cur ~= ARGV[2*i] then return -1 end
end
local removed = 0
for i = 1, n do
  local f, k = ARGV[2*i-1], 4*i-2
  removed = removed + redis.call('HDEL', KEYS[1], f)
  if redis.call('HDEL', KEYS[k], 'm/' .. f) == 1 then
    redis.call('HINCRBY', KEYS[k], 'v', 1)
    if redis.call('HINCRBY', KEYS[k], 'n', -1) <= 0 then redis.call('DEL', KEYS[k], KEYS[k+1]) end
  end
  redis.call('DEL', KEYS[k+2], KEYS[k+3])
end
return removed`)

// loadScript returns the group KEYS[2] (its hash, flat) and its members'
// subscriptions (field, JSON pairs, from KEYS[1]). First it adopts the
// subscriptions ARGV[2i-1] that still read ARGV[2i] and are not members
// (stored before groups, or written to Redis by a tool): they join, and
// the first to join a group without a position brings its offsets from
// before groups (KEYS[2+i]) if it has any.
var loadScript = redis.NewScript(`
local fresh = redis.call('HGET', KEYS[2], 'p') == false
for i = 1, #ARGV / 2 do
  local f = ARGV[2*i-1]
  if redis.call('HGET', KEYS[1], f) == ARGV[2*i] and redis.call('HSETNX', KEYS[2], 'm/' .. f, '1') == 1 then
    redis.call('HINCRBY', KEYS[2], 'n', 1)
    redis.call('HINCRBY', KEYS[2], 'v', 1)
    if fresh and redis.call('EXISTS', KEYS[2+i]) == 1 then
      local kv = redis.call('HGETALL', KEYS[2+i])
      for j = 1, #kv, 2 do redis.call('HSET', KEYS[2], kv[j], kv[j+1]) end
      redis.call('HSET', KEYS[2], 'p', '1')
      fresh = false
    end
    redis.call('DEL', KEYS[2+i])
  end
end
local g = redis.call('HGETALL', KEYS[2])
local subs = {}
for j = 1, #g, 2 do
  if string.sub(g[j], 1, 2) == 'm/' then
    local f = string.sub(g[j], 3)
    subs[#subs+1] = f
    subs[#subs+1] = redis.call('HGET', KEYS[1], f) or ''
  end
end
return {g, subs}`)

// positionScript gives the group KEYS[2] the offsets ARGV[2..] (pairs) if
// it has no position yet, while runner ARGV[1] holds its lease KEYS[1].
var positionScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[2], 'p') then return 1 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i+1]) end
redis.call('HSET', KEYS[2], 'p', '1')
return 1`)
