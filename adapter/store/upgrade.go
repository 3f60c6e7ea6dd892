package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// kar before Redis Cluster support kept every key of an application under
// the one hash tag {app}: "kar:{app}:state:TYPE:ID", "kar:{app}:offset:N",
// one "kar:{app}:reminders" hash, ... (names escaped for '%' and ':' only).
// EnsureLayout moves such keys to the present scheme once per application,
// so that an upgraded kar finds its actors' state and reminders, and goes
// on from its partitions' committed positions instead of adopting them from
// their oldest records.

// layoutVersion marks an application whose keys are in the present scheme.
const layoutVersion = "2"

// layout is the marker of the application's key scheme.
func (k Keys) layout() string { return k.prefix + "layout" }

// EnsureLayout moves the application's keys from kar's previous layout to
// the present one unless that was done already: one GET when it was. The
// first sidecar to start does it (under a lock) while the others wait. The
// application's sidecars of the previous kar must be stopped first (they
// would go on using the previous names).
func EnsureLayout(ctx context.Context, rdb redis.UniversalClient, keys Keys) (moved int, err error) {
	lock := keys.prefix + "layout-lock"
	for {
		v, err := rdb.Get(ctx, keys.layout()).Result()
		if err == nil && v == layoutVersion {
			return 0, nil
		}
		if err != nil && !errors.Is(err, redis.Nil) {
			return 0, fmt.Errorf("read the key layout: %w", err)
		}
		ok, err := rdb.SetNX(ctx, lock, "1", time.Minute).Result()
		if err != nil {
			return 0, fmt.Errorf("lock the key layout: %w", err)
		}
		if ok {
			moved, err := upgradeLayout(ctx, rdb, keys)
			if err == nil {
				err = rdb.Set(ctx, keys.layout(), layoutVersion, 0).Err()
			}
			rdb.Del(context.WithoutCancel(ctx), lock)
			if err != nil {
				return moved, fmt.Errorf("move the application's keys to the present layout: %w", err)
			}
			return moved, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("wait for another sidecar moving the application's keys: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// oldUnescaper undoes the previous layout's escaping of names.
var oldUnescaper = strings.NewReplacer("%3A", ":", "%25", "%")

// newName maps a key of the previous layout (what follows "kar:{app}:") to
// its present name; "" for a key that is dropped (a lease: its sidecar is
// gone) or not of the previous layout.
func (k Keys) newName(rest string) string {
	kind, name, _ := strings.Cut(rest, ":")
	parts := strings.Split(name, ":")
	for i, p := range parts {
		parts[i] = oldUnescaper.Replace(p)
	}
	switch {
	case kind == "state" && len(parts) == 2:
		return k.ActorState(parts[0], parts[1])
	case kind == "placement" && len(parts) == 2:
		return k.Placement(parts[0], parts[1])
	case kind == "submaps" && len(parts) == 2:
		return k.ActorSubmaps(parts[0], parts[1])
	case kind == "submap" && len(parts) == 3:
		return k.ActorSubmap(parts[0], parts[1], parts[2])
	case kind == "calls" && len(parts) == 1:
		return k.Calls(parts[0])
	case kind == "attempts" && len(parts) == 1:
		return k.Attempts(parts[0])
	case kind == "response" && len(parts) == 1:
		return k.Response(parts[0])
	case kind == "offset" && len(parts) == 1:
		if p, err := strconv.ParseInt(parts[0], 10, 32); err == nil {
			return k.Offset(int32(p))
		}
	}
	return ""
}

// upgradeLayout moves every key of the previous layout: copied (type and
// TTL kept; across slots and nodes alike), then deleted. The reminders
// hash is split by instance. Moving again a key already moved (a previous
// run stopped half way) copies it over the new one.
func upgradeLayout(ctx context.Context, rdb redis.UniversalClient, keys Keys) (int, error) {
	all, err := ScanKeys(ctx, rdb, keys.prefix+"*")
	if err != nil {
		return 0, err
	}
	var old []string
	for _, key := range all {
		rest := strings.TrimPrefix(key, keys.prefix)
		if rest == "reminders" || strings.HasPrefix(rest, "lease:") || keys.newName(rest) != "" {
			old = append(old, key)
		}
	}
	if len(old) == 0 {
		return 0, nil
	}
	if err := awaitPreviousSidecars(ctx, rdb, keys); err != nil {
		return 0, err
	}
	moved := 0
	for _, key := range old {
		rest := strings.TrimPrefix(key, keys.prefix)
		if rest == "reminders" {
			n, err := splitReminders(ctx, rdb, keys, key)
			if err != nil {
				return moved, err
			}
			moved += n
			continue
		}
		if strings.HasPrefix(rest, "lease:") {
			if err := rdb.Del(ctx, key).Err(); err != nil {
				return moved, err
			}
			continue
		}
		to := keys.newName(rest)
		if to == "" {
			continue // a key of the application's own tag, unchanged
		}
		if err := copyKey(ctx, rdb, key, to); err != nil {
			return moved, fmt.Errorf("move %s to %s: %w", key, to, err)
		}
		if err := rdb.Del(ctx, key).Err(); err != nil {
			return moved, err
		}
		moved++
	}
	return moved, nil
}

// awaitPreviousSidecars returns once no sidecar of the previous kar is
// registered: one that still ran would go on with the previous names (its
// leases, positions and placements) beside the sidecars of this version.
// Registrations of sidecars that died expire within a lease's TTL (a few
// seconds), which it waits out; a longer one is an error.
func awaitPreviousSidecars(ctx context.Context, rdb redis.UniversalClient, keys Keys) error {
	for {
		ids, err := rdb.SMembers(ctx, keys.Sidecars()).Result()
		if err != nil {
			return err
		}
		longest := time.Duration(0)
		var live []string
		for _, id := range ids {
			ttl, err := rdb.PTTL(ctx, keys.Sidecar(id)).Result()
			if err != nil {
				return err
			}
			if ttl == -2 { // go-redis: no such key
				continue // no record: gone
			}
			live = append(live, id)
			if ttl == -1 || ttl > 10*time.Second {
				longest = time.Hour // no expiry, or not a lease's
			} else {
				longest = max(longest, ttl)
			}
		}
		if len(live) == 0 {
			return nil
		}
		if longest > 10*time.Second {
			return fmt.Errorf("%d sidecar(s) of an earlier kar are running (%s): stop them, then start this version, which moves the application's keys to its layout", len(live), strings.Join(live, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(longest + 50*time.Millisecond):
		}
	}
}

// splitReminders moves the fields of the previous layout's reminders hash
// (field: type/id/reminderId, path-escaped) to their instances' hashes.
func splitReminders(ctx context.Context, rdb redis.UniversalClient, keys Keys, key string) (int, error) {
	all, err := rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return 0, err
	}
	for f, v := range all {
		parts := strings.Split(f, "/")
		if len(parts) != 3 {
			continue
		}
		typ, err1 := url.PathUnescape(parts[0])
		id, err2 := url.PathUnescape(parts[1])
		if err1 != nil || err2 != nil {
			continue
		}
		if err := rdb.HSet(ctx, keys.Reminders(typ, id), f, v).Err(); err != nil {
			return 0, err
		}
	}
	if err := rdb.Del(ctx, key).Err(); err != nil {
		return 0, err
	}
	return len(all), nil
}

// copyKey copies key to `to` with its TTL, by type (the previous layout
// holds strings, hashes and sets); a key gone meanwhile is no error. DUMP
// and RESTORE would do, but the embedded Redis-protocol server of kar dev
// dumps strings only.
func copyKey(ctx context.Context, rdb redis.UniversalClient, key, to string) error {
	typ, err := rdb.Type(ctx, key).Result()
	if err != nil {
		return err
	}
	ttl, err := rdb.PTTL(ctx, key).Result()
	if err != nil {
		return err
	}
	if ttl < 0 {
		ttl = 0 // no expiry
	}
	switch typ {
	case "none":
		return nil
	case "string":
		v, err := rdb.Get(ctx, key).Result()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		if err != nil {
			return err
		}
		return rdb.Set(ctx, to, v, ttl).Err()
	case "hash":
		v, err := rdb.HGetAll(ctx, key).Result()
		if err != nil || len(v) == 0 {
			return err
		}
		_, err = rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, to)
			p.HSet(ctx, to, v)
			if ttl > 0 {
				p.PExpire(ctx, to, ttl)
			}
			return nil
		})
		return err
	case "set":
		v, err := rdb.SMembers(ctx, key).Result()
		if err != nil || len(v) == 0 {
			return err
		}
		members := make([]any, len(v))
		for i, m := range v {
			members[i] = m
		}
		_, err = rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, to)
			p.SAdd(ctx, to, members...)
			if ttl > 0 {
				p.PExpire(ctx, to, ttl)
			}
			return nil
		})
		return err
	}
	return fmt.Errorf("a key of type %s was not expected", typ)
}
