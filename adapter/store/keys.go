// Package store is kar's Redis adapter (github.com/redis/go-redis/v9): the
// client setup and the one key scheme of the project.
package store

import (
	"strconv"
	"strings"
)

// Keys is the Redis key scheme of one application. Every key kar writes
// starts with "kar:{app" and the braces are a Redis Cluster hash tag: the
// keys that one Lua script or transaction touches share a tag, so that on
// a Redis Cluster they live in one slot, and nothing else shares it, so
// that an application spreads over the cluster's shards:
//
//	kar:{app}:...           the application's index and coordination: the
//	                        members and their records and load, the
//	                        reminder schedule, the subscriptions and their
//	                        groups, leases and positions
//	kar:{app:p:N}:...       Kafka partition N: its lease and committed position
//	kar:{app:a:TYPE:ID}:... one actor instance: state, sub-maps, placement, reminders
//	kar:{app:r:REQ}:...     one request: its nested calls, runs, tail-call record
//
// One Redis serves many applications: an application's keys are exactly
// those matching Pattern (application names hold no ':', '{' or '}').
type Keys struct {
	app    string // "kar:{" + app
	prefix string // app + "}:"
}

// NewKeys returns the key scheme of app (already checked by config.ValidApp).
func NewKeys(app string) Keys {
	return Keys{app: "kar:{" + app, prefix: "kar:{" + app + "}:"}
}

// Pattern matches every key of the application (for SCAN): the ones under
// its own tag ("kar:{app}:") and under the tags of its partitions, actor
// instances and requests ("kar:{app:").
func (k Keys) Pattern() string { return k.app + "[:}]*" }

// Sidecars is the set of the ids of sidecars that joined and have not been seen to leave.
func (k Keys) Sidecars() string { return k.prefix + "sidecars" }

// Sidecar holds one sidecar's registration (JSON), expiring with its lease.
// It shares the application's tag with Sidecars: a script forgets an id
// whose record is gone.
func (k Keys) Sidecar(id string) string { return k.prefix + "sidecar:" + id }

// Load holds one sidecar's load (JSON, metrics.Load), for `kar get -s load`.
func (k Keys) Load(id string) string { return k.prefix + "load:" + id }

// LoadWake is the channel on which a sidecar announces that it holds a
// first request for a target with no replica (the autoscalers listen).
func (k Keys) LoadWake() string { return k.prefix + "load-wake" }

// OrphanScan names the sidecar scanning for orphaned partitions this
// second (with a TTL): one scan a second for the whole application.
func (k Keys) OrphanScan() string { return k.prefix + "orphan-scan" }

// Members is the pub/sub channel announcing joins and leaves.
func (k Keys) Members() string { return k.prefix + "members" }

func (k Keys) partition(p int32) string { return k.app + ":p:" + strconv.Itoa(int(p)) + "}:" }

// Lease is the owner of Kafka partition p of the application's topic.
func (k Keys) Lease(p int32) string { return k.partition(p) + "lease" }

// Offset is the next offset of partition p not yet known to be finished;
// it shares the tag of Lease (scripts commit it only under the lease).
func (k Keys) Offset(p int32) string { return k.partition(p) + "offset" }

// Finished lists the records of partition p past Offset that are finished
// (ranges of offsets), committed with it: a new owner skips them.
func (k Keys) Finished(p int32) string { return k.partition(p) + "finished" }

// Names inside keys (actor types and ids, sub-map keys, request ids) are
// escaped so that they hold no ':' (the separator), which keeps the map
// from names to keys injective (without it, the sub-map "b:k" of actor "a"
// and the sub-map "k" of actor "a:b" were one key), and no '{' or '}',
// which keeps every hash tag exactly the braces the scheme puts. Names
// without those characters (nearly all) are unchanged.
var (
	nameEscaper   = strings.NewReplacer("%", "%25", ":", "%3A", "{", "%7B", "}", "%7D")
	nameUnescaper = strings.NewReplacer("%3A", ":", "%7B", "{", "%7D", "}", "%25", "%")
)

func esc(name string) string {
	if !strings.ContainsAny(name, "%:{}") {
		return name
	}
	return nameEscaper.Replace(name)
}

// actor is the start of the keys of one actor instance, up to and with the
// ':' after its tag.
func (k Keys) actor(actorType, id string) string {
	return k.app + ":a:" + esc(actorType) + ":" + esc(id) + "}:"
}

// ActorState is the hash of one actor instance's state.
func (k Keys) ActorState(actorType, id string) string { return k.actor(actorType, id) + kindState }

// ActorSubmap is the hash of one sub-map of an actor instance's state.
func (k Keys) ActorSubmap(actorType, id, key string) string {
	return k.actor(actorType, id) + "submap:" + esc(key)
}

// ActorSubmaps is the set of the sub-map keys an actor instance has.
func (k Keys) ActorSubmaps(actorType, id string) string { return k.actor(actorType, id) + "submaps" }

// Placement maps an actor instance to the sidecar hosting it.
func (k Keys) Placement(actorType, id string) string {
	return k.actor(actorType, id) + kindPlacement
}

// Reminders is the hash of one actor instance's reminders (field:
// type/id/reminderId, as in ReminderSchedule).
func (k Keys) Reminders(actorType, id string) string { return k.actor(actorType, id) + "reminders" }

// The suffixes after an actor instance's tag that name its whole state
// and its placement; ActorPattern takes them.
const (
	kindState     = "state"
	kindPlacement = "placement"
)

// PlacementPattern matches the placement keys of every actor instance of
// the application (for SCAN; ParseActor reads the instance back).
func (k Keys) PlacementPattern() string { return k.app + ":a:*}:" + kindPlacement }

// StatePattern matches the state hashes of every actor instance.
func (k Keys) StatePattern() string { return k.app + ":a:*}:" + kindState }

// ParseActor reads the actor type and id back from a key of one actor
// instance (Placement, ActorState, ...) of this application.
func (k Keys) ParseActor(key string) (actorType, id string, ok bool) {
	rest, found := strings.CutPrefix(key, k.app+":a:")
	if !found {
		return "", "", false
	}
	tag, _, found := strings.Cut(rest, "}:")
	if !found {
		return "", "", false
	}
	typ, id, found := strings.Cut(tag, ":")
	if !found || strings.Contains(id, ":") {
		return "", "", false
	}
	return nameUnescaper.Replace(typ), nameUnescaper.Replace(id), true
}

// Runtime is the patterns of the keys of messages in flight (partition
// leases and positions, placements, requests' records): what `kar drain`
// removes.
func (k Keys) Runtime() []string {
	return []string{k.app + ":p:*", k.app + ":r:*", k.PlacementPattern()}
}

// ReminderSchedule is the sorted set of reminder fields (type/id/reminderId)
// by next fire time (ms): the application's one index of its reminders,
// which every scheduler reads; the reminders themselves live with their
// actor instance (Reminders).
func (k Keys) ReminderSchedule() string { return k.prefix + "reminder-schedule" }

// ReminderWake is the pub/sub channel announcing a change of the reminder schedule.
func (k Keys) ReminderWake() string { return k.ReminderSchedule() + ":wake" }

// Subscriptions is the hash of all event subscriptions (field: type/id/subscriptionId).
// Subscriptions, their groups and leases share the application's tag: the
// scripts that change a group touch the subscriptions hash too.
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

func (k Keys) request(requestID string) string { return k.app + ":r:" + esc(requestID) + "}:" }

// Calls is the hash of the synchronous calls a request's run has made and
// that are not answered yet (retry orchestration).
func (k Keys) Calls(requestID string) string { return k.request(requestID) + "calls" }

// Attempts counts the runs of a request redelivered after its host died.
func (k Keys) Attempts(requestID string) string { return k.request(requestID) + "attempts" }

// Response holds the result of a tail-call step, committed with the next step.
func (k Keys) Response(requestID string) string { return k.request(requestID) + "response" }
