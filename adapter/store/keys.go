// Package store is kar's Redis adapter (github.com/redis/go-redis/v9): the
// client setup and the one key scheme of the project.
package store

import (
	"strconv"
	"strings"
)

// Keys is the Redis key scheme of one application. Every key kar writes
// starts with "kar:{app}:" so one Redis serves many applications and `kar
// purge` can find all of an application's keys; the braces are a Redis
// Cluster hash tag, keeping an application's keys in one slot so that Lua
// scripts and transactions may touch several of them.
type Keys struct{ prefix string }

// NewKeys returns the key scheme of app (already checked by config.ValidApp).
func NewKeys(app string) Keys { return Keys{prefix: "kar:{" + app + "}:"} }

// Pattern matches every key of the application (for SCAN).
func (k Keys) Pattern() string { return k.prefix + "*" }

// Sidecars is the set of the ids of sidecars that joined and have not been seen to leave.
func (k Keys) Sidecars() string { return k.prefix + "sidecars" }

// Sidecar holds one sidecar's registration (JSON), expiring with its lease.
func (k Keys) Sidecar(id string) string { return k.prefix + "sidecar:" + id }

// Load holds one sidecar's load (JSON, metrics.Load), for `kar get -s load`.
func (k Keys) Load(id string) string { return k.prefix + "load:" + id }

// Members is the pub/sub channel announcing joins and leaves.
func (k Keys) Members() string { return k.prefix + "members" }

// LeasePrefix is Lease without the partition number (for the claim script).
func (k Keys) LeasePrefix() string { return k.prefix + "lease:" }

// Lease is the owner of Kafka partition p of the application's topic.
func (k Keys) Lease(p int32) string { return k.prefix + "lease:" + strconv.Itoa(int(p)) }

// Offset is the next offset of partition p not yet known to be finished.
func (k Keys) Offset(p int32) string { return k.prefix + "offset:" + strconv.Itoa(int(p)) }

// Names inside keys (actor types and ids, sub-map keys, request ids) are
// escaped so that they hold no ':' (the separator) and the map from names
// to keys stays injective: without it, the sub-map "b:k" of actor "a" and
// the sub-map "k" of actor "a:b" were one key. Names without '%' or ':'
// (nearly all) are unchanged, so existing keys keep their names.
var (
	nameEscaper   = strings.NewReplacer("%", "%25", ":", "%3A")
	nameUnescaper = strings.NewReplacer("%3A", ":", "%25", "%")
)

func esc(name string) string {
	if !strings.ContainsAny(name, "%:") {
		return name
	}
	return nameEscaper.Replace(name)
}

func actorPart(actorType, id string) string { return esc(actorType) + ":" + esc(id) }

// SplitActor parses what follows PlacementPrefix or StatePrefix in a key
// back into the actor type and id.
func SplitActor(rest string) (actorType, id string, ok bool) {
	typ, id, ok := strings.Cut(rest, ":")
	if !ok || strings.Contains(id, ":") {
		return "", "", false
	}
	return nameUnescaper.Replace(typ), nameUnescaper.Replace(id), true
}

// Placement maps an actor instance to the sidecar hosting it.
func (k Keys) Placement(actorType, id string) string {
	return k.prefix + "placement:" + actorPart(actorType, id)
}

// PlacementPrefix and StatePrefix start every placement and state key;
// what follows is "type:id", escaped (see SplitActor).
func (k Keys) PlacementPrefix() string { return k.prefix + "placement:" }

// StatePrefix: see PlacementPrefix.
func (k Keys) StatePrefix() string { return k.prefix + "state:" }

// Runtime is the pattern of the keys of messages in flight (partition
// leases and positions, tail-call records): what `kar drain` removes.
func (k Keys) Runtime() []string {
	return []string{k.prefix + "lease:*", k.prefix + "offset:*", k.prefix + "response:*", k.prefix + "placement:*", k.prefix + "calls:*", k.prefix + "attempts:*"}
}

// ActorState is the hash of one actor instance's state.
func (k Keys) ActorState(actorType, id string) string {
	return k.prefix + "state:" + actorPart(actorType, id)
}

// ActorSubmap is the hash of one sub-map of an actor instance's state.
func (k Keys) ActorSubmap(actorType, id, key string) string {
	return k.prefix + "submap:" + actorPart(actorType, id) + ":" + esc(key)
}

// ActorSubmaps is the set of the sub-map keys an actor instance has.
func (k Keys) ActorSubmaps(actorType, id string) string {
	return k.prefix + "submaps:" + actorPart(actorType, id)
}

// Reminders is the hash of all reminders (field: type/id/reminderId).
func (k Keys) Reminders() string { return k.prefix + "reminders" }

// ReminderSchedule is the sorted set of reminder fields by next fire time (ms).
func (k Keys) ReminderSchedule() string { return k.prefix + "reminder-schedule" }

// ReminderWake is the pub/sub channel announcing a change of the reminder schedule.
func (k Keys) ReminderWake() string { return k.ReminderSchedule() + ":wake" }

// Subscriptions is the hash of all event subscriptions (field: type/id/subscriptionId).
func (k Keys) Subscriptions() string { return k.prefix + "subscriptions" }

// SubscriptionOffsets is the hash of a subscription's committed offsets
// (partition → the next offset to deliver).
func (k Keys) SubscriptionOffsets(field string) string {
	return k.Subscriptions() + ":offsets:" + field
}

// SubscriptionLease names the sidecar running a subscription (with a TTL).
func (k Keys) SubscriptionLease(field string) string { return k.Subscriptions() + ":lease:" + field }

// SubscriptionRunners is the sorted set of live subscription runners
// (member: sidecar id, score: Redis time of its last heartbeat in ms).
func (k Keys) SubscriptionRunners() string { return k.Subscriptions() + ":runners" }

// SubscriptionWake is the pub/sub channel announcing subscription changes.
func (k Keys) SubscriptionWake() string { return k.Subscriptions() + ":wake" }

// Calls is the hash of the synchronous calls a request's run has made and
// that are not answered yet (retry orchestration).
func (k Keys) Calls(requestID string) string { return k.prefix + "calls:" + esc(requestID) }

// Attempts counts the runs of a request redelivered after its host died.
func (k Keys) Attempts(requestID string) string { return k.prefix + "attempts:" + esc(requestID) }

// Response holds the result of a tail-call step, committed with the next step.
func (k Keys) Response(requestID string) string { return k.prefix + "response:" + esc(requestID) }
