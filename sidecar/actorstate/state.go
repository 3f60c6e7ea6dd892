// Package actorstate serves the actor state routes of the KAR REST API
// (/kar/v1/actor/{type}/{id}/state...) from Redis.
//
// Layout (adapter/store/keys.go): an instance's top-level entries are the
// fields of the hash ActorState(type, id); each sub-map is its own hash
// ActorSubmap(type, id, key), and the set ActorSubmaps(type, id) names the
// sub-maps that may be non-empty. Values are JSON text, stored as sent
// (compacted).
//
// The set is kept a superset of the non-empty sub-maps: every write to a
// sub-map adds its name in the same transaction, and a name is removed only
// by a script that sees the sub-map empty. Readers skip names whose hash is
// gone, so a stale name is harmless.
//
// A top-level key and a sub-map may share a name (they live in different
// hashes, as in KAR where they were distinct fields). GET .../state returns
// one JSON object: top-level keys map to their values, sub-maps to nested
// objects; when a name is both, the sub-map wins in that one view, the
// top-level value stays readable through GET .../state/{key}.
package actorstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/kar-runtime/kar/adapter/store"
)

// instance is one actor instance's state in Redis.
type instance struct {
	rdb  redis.UniversalClient
	keys store.Keys
	typ  string
	id   string
}

func (in instance) stateKey() string          { return in.keys.ActorState(in.typ, in.id) }
func (in instance) submapsKey() string        { return in.keys.ActorSubmaps(in.typ, in.id) }
func (in instance) submapKey(m string) string { return in.keys.ActorSubmap(in.typ, in.id, m) }

// errAbsent reports a missing entry.
var errAbsent = errors.New("absent")

// dropIfEmpty removes a sub-map's name from the set once its hash is empty.
// KEYS[1] = sub-map hash, KEYS[2] = set of sub-map names, ARGV[1] = name.
var dropIfEmpty = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 0`)

// delSubkey deletes one sub-map entry and, if that emptied the sub-map, its name.
// KEYS[1] = sub-map hash, KEYS[2] = set of sub-map names, ARGV[1] = name, ARGV[2] = subkey.
var delSubkey = redis.NewScript(`
local n = redis.call('HDEL', KEYS[1], ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[1])
end
return n`)

// get returns the JSON text of field in hash (the instance's top-level
// state or one of its sub-maps).
func (in instance) get(ctx context.Context, hash, field string) (string, error) {
	v, err := in.rdb.HGet(ctx, hash, field).Result()
	if errors.Is(err, redis.Nil) {
		return "", errAbsent
	}
	return v, err
}

func (in instance) exists(ctx context.Context, hash, field string) (bool, error) {
	return in.rdb.HExists(ctx, hash, field).Result()
}

// set stores a top-level entry and reports whether it is new.
func (in instance) set(ctx context.Context, key string, value []byte) (bool, error) {
	n, err := in.rdb.HSet(ctx, in.stateKey(), key, value).Result()
	return n == 1, err
}

// setSub stores key/subkey and reports whether it is new.
func (in instance) setSub(ctx context.Context, key, subkey string, value []byte) (bool, error) {
	var hset *redis.IntCmd
	_, err := in.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		hset = p.HSet(ctx, in.submapKey(key), subkey, value)
		p.SAdd(ctx, in.submapsKey(), key)
		return nil
	})
	if err != nil {
		return false, err
	}
	return hset.Val() == 1, nil
}

func (in instance) del(ctx context.Context, key string) (int64, error) {
	return in.rdb.HDel(ctx, in.stateKey(), key).Result()
}

func (in instance) delSub(ctx context.Context, key, subkey string) (int64, error) {
	return delSubkey.Run(ctx, in.rdb, []string{in.submapKey(key), in.submapsKey()}, key, subkey).Int64()
}

// submapNames lists the sub-maps that may be non-empty.
func (in instance) submapNames(ctx context.Context) ([]string, error) {
	return in.rdb.SMembers(ctx, in.submapsKey()).Result()
}

// getAll returns the whole state as one JSON object (see the package comment).
func (in instance) getAll(ctx context.Context) (map[string]json.RawMessage, error) {
	names, err := in.submapNames(ctx)
	if err != nil {
		return nil, err
	}
	var top *redis.MapStringStringCmd
	subs := make([]*redis.MapStringStringCmd, len(names))
	_, err = in.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		top = p.HGetAll(ctx, in.stateKey())
		for i, m := range names {
			subs[i] = p.HGetAll(ctx, in.submapKey(m))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]json.RawMessage, len(top.Val())+len(names))
	for k, v := range top.Val() {
		out[k] = json.RawMessage(v)
	}
	for i, m := range names {
		entries := subs[i].Val()
		if len(entries) == 0 {
			continue
		}
		nested := make(map[string]json.RawMessage, len(entries))
		for k, v := range entries {
			nested[k] = json.RawMessage(v)
		}
		b, err := json.Marshal(nested)
		if err != nil {
			return nil, fmt.Errorf("sub-map %q holds a value that is not JSON: %w", m, err)
		}
		out[m] = b
	}
	return out, nil
}

// deleteAll removes every entry of the instance and returns how many.
func (in instance) deleteAll(ctx context.Context) (int64, error) {
	var removed int64
	// WATCH the set of sub-map names so a sub-map created meanwhile is not orphaned.
	txf := func(tx *redis.Tx) error {
		names, err := tx.SMembers(ctx, in.submapsKey()).Result()
		if err != nil {
			return err
		}
		keys := []string{in.stateKey()}
		for _, m := range names {
			keys = append(keys, in.submapKey(m))
		}
		lens := make([]*redis.IntCmd, len(keys))
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range keys {
				lens[i] = p.HLen(ctx, k)
			}
			p.Del(ctx, append(keys, in.submapsKey())...)
			return nil
		})
		if err != nil {
			return err
		}
		removed = 0
		for _, l := range lens {
			removed += l.Val()
		}
		return nil
	}
	for attempt := 0; ; attempt++ {
		err := in.rdb.Watch(ctx, txf, in.submapsKey())
		if errors.Is(err, redis.TxFailedErr) && attempt < 100 {
			continue
		}
		return removed, err
	}
}

// updateOp is the body of POST .../state (stateUpdateOp in the API).
type updateOp struct {
	Updates        map[string]json.RawMessage            `json:"updates"`
	SubmapUpdates  map[string]map[string]json.RawMessage `json:"submapupdates"`
	Removals       []string                              `json:"removals"`
	SubmapRemovals map[string][]string                   `json:"submapremovals"`
}

// updateResult is the answer to POST .../state, read by kar-sdk as .added/.removed.
type updateResult struct {
	Added   int64 `json:"added"`
	Removed int64 `json:"removed"`
}

// update applies all removals, then all updates, in one transaction.
func (in instance) update(ctx context.Context, op updateOp) (updateResult, error) {
	var hdels, hsets []*redis.IntCmd
	_, err := in.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if len(op.Removals) > 0 {
			hdels = append(hdels, p.HDel(ctx, in.stateKey(), op.Removals...))
		}
		for m, subkeys := range op.SubmapRemovals {
			if len(subkeys) > 0 {
				hdels = append(hdels, p.HDel(ctx, in.submapKey(m), subkeys...))
			}
		}
		if len(op.Updates) > 0 {
			hsets = append(hsets, p.HSet(ctx, in.stateKey(), pairs(op.Updates)...))
		}
		for m, entries := range op.SubmapUpdates {
			if len(entries) > 0 {
				hsets = append(hsets, p.HSet(ctx, in.submapKey(m), pairs(entries)...))
				p.SAdd(ctx, in.submapsKey(), m)
			}
		}
		return nil
	})
	if err != nil {
		return updateResult{}, err
	}
	var res updateResult
	for _, c := range hdels {
		res.Removed += c.Val()
	}
	for _, c := range hsets {
		res.Added += c.Val()
	}
	for m := range op.SubmapRemovals {
		if len(op.SubmapUpdates[m]) == 0 {
			if err := dropIfEmpty.Run(ctx, in.rdb, []string{in.submapKey(m), in.submapsKey()}, m).Err(); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

func pairs(m map[string]json.RawMessage) []any {
	out := make([]any, 0, 2*len(m))
	for k, v := range m {
		out = append(out, k, []byte(v))
	}
	return out
}

// submap operations of POST .../state/{key}.

func (in instance) submapGet(ctx context.Context, key string) (map[string]json.RawMessage, error) {
	entries, err := in.rdb.HGetAll(ctx, in.submapKey(key)).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]json.RawMessage, len(entries))
	for k, v := range entries {
		out[k] = json.RawMessage(v)
	}
	return out, nil
}

func (in instance) submapKeys(ctx context.Context, key string) ([]string, error) {
	return in.rdb.HKeys(ctx, in.submapKey(key)).Result()
}

func (in instance) submapSize(ctx context.Context, key string) (int64, error) {
	return in.rdb.HLen(ctx, in.submapKey(key)).Result()
}

func (in instance) submapClear(ctx context.Context, key string) (int64, error) {
	var n *redis.IntCmd
	_, err := in.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		n = p.HLen(ctx, in.submapKey(key))
		p.Del(ctx, in.submapKey(key))
		p.SRem(ctx, in.submapsKey(), key)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n.Val(), nil
}

// DeleteAll removes all the state of actor instance actorType/id (when the
// actor is removed). Removing the state of an instance that has none is not
// an error.
func DeleteAll(ctx context.Context, rdb redis.UniversalClient, keys store.Keys, actorType, id string) error {
	in := instance{rdb: rdb, keys: keys, typ: actorType, id: id}
	if _, err := in.deleteAll(ctx); err != nil {
		return fmt.Errorf("delete state of actor %s/%s: %w", actorType, id, err)
	}
	return nil
}

// GetAll returns the whole state of actor instance actorType/id, sub-maps
// included, as GET .../state shows it (kar get -i).
func GetAll(ctx context.Context, rdb redis.UniversalClient, keys store.Keys, actorType, id string) (map[string]json.RawMessage, error) {
	st, err := instance{rdb: rdb, keys: keys, typ: actorType, id: id}.getAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("read state of actor %s/%s: %w", actorType, id, err)
	}
	return st, nil
}
