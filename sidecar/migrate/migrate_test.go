package migrate_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/kar-runtime/kar/sidecar"
	"github.com/kar-runtime/kar/sidecar/config"
	"github.com/kar-runtime/kar/sidecar/migrate"
)

func TestSplitActor(t *testing.T) {
	known := map[string]bool{"Cart": true, "Big_Cart": true}
	cases := []struct{ rest, typ, id string }{
		{"Cart_c1", "Cart", "c1"},
		{"Cart_c_1", "Cart", "c_1"},
		{"Big_Cart_x", "Big_Cart", "x"}, // the longest known type wins
		{"Order_o_7", "Order", "o_7"},   // unknown type: the first '_'
		{"nounderscore", "", ""},
		{"Cart_", "", ""},
	}
	for _, c := range cases {
		typ, id, ok := migrate.SplitActor(c.rest, known)
		if ok != (c.typ != "") || ok && (typ != c.typ || id != c.id) {
			t.Errorf("SplitActor(%q) = %q %q %v, want %q %q", c.rest, typ, id, ok, c.typ, c.id)
		}
	}
}

func TestSplitField(t *testing.T) {
	cases := []struct {
		f, key, sub string
		isSub, ok   bool
	}{
		{"total__", "total", "", false, true},
		{"gift_card__", "gift_card", "", false, true}, // KAR's getAll mis-read this one
		{"items_sku1", "items", "sku1", true, true},
		{"items_sku_2", "items", "sku_2", true, true},
		{"plain", "", "", false, false},
		{"__", "", "", false, false},
	}
	for _, c := range cases {
		k, s, isSub, ok := migrate.SplitField(c.f)
		if ok != c.ok || ok && (k != c.key || s != c.sub || isSub != c.isSub) {
			t.Errorf("SplitField(%q) = %q %q %v %v", c.f, k, s, isSub, ok)
		}
	}
}

// writeKAR writes application shop's data in KAR 1.3.10's layout with
// plain Redis commands, as KAR's sidecar left it (kar-1.3.10-keyspace.md).
func writeKAR(t *testing.T, rdb redis.UniversalClient, target time.Time) {
	ctx := context.Background()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(rdb.HSet(ctx, "kar_shop_main_state_Cart_c1", "total__", "42", "note__", `"hi"`, "items_sku1", `{"qty":2}`, "items_sku2", `{"qty":1}`).Err())
	must(rdb.HSet(ctx, "kar_shop_main_state_Cart_c2", "total__", "7").Err())
	must(rdb.HSet(ctx, "kar_shop_binding_0_reminders_Cart_c1_r1", "actorType", "Cart", "actorId", "c1", "id", "r1",
		"path", "/checkout", "targetTime", target.Format(time.RFC3339Nano), "period", "30s", "encodedData", `[{"msg":"hi"}]`).Err())
	must(rdb.HSet(ctx, "kar_shop_binding_0_subscriptions_Cart_c1_orders", "path", "/onOrder", "topic", "orders", "contentType", "application/json").Err())
	// Transient keys that must not be copied, and another application's data.
	must(rdb.Set(ctx, "kar_shop_rpc_Cart_c1", "node-1234", 0).Err())
	must(rdb.Set(ctx, "kar_shop_alt_req-1", "node-1234", 0).Err())
	must(rdb.HSet(ctx, "kar_other_main_state_Cart_c9", "total__", "1").Err())
}

func TestRun(t *testing.T) {
	b := testenv.Backend(t)
	ctx := context.Background()
	cfg := config.Backend{KafkaBrokers: []string{b.KafkaBrokers()}, KafkaVersion: "2.8.0", RedisHost: b.RedisHost(), RedisPort: b.RedisPort(), LeaseTTL: time.Second}
	be, err := sidecar.Connect(ctx, cfg, "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	target := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	writeKAR(t, be.Redis, target)
	routes := sidecar.StoreRoutes(be, "shop", slog.New(slog.NewTextHandler(io.Discard, nil)))
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		routes.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}

	// A dry run reads and counts, and writes nothing.
	sum, err := migrate.Run(ctx, be.Redis, "shop", routes, true)
	if err != nil || sum.Actors != 2 || sum.StateEntries != 5 || sum.Reminders != 1 || sum.Subscriptions != 1 || len(sum.Problems) != 0 {
		t.Fatalf("dry run: %v %+v", err, sum)
	}
	if _, body := get("/kar/v1/actor/Cart/c1/state"); strings.TrimSpace(body) != "{}" {
		t.Fatalf("a dry run wrote state: %s", body)
	}

	sum, err = migrate.Run(ctx, be.Redis, "shop", routes, false)
	if err != nil || sum.Actors != 2 || sum.StateEntries != 5 || sum.Reminders != 1 || sum.Subscriptions != 1 || len(sum.Problems) != 0 {
		t.Fatalf("run: %v %+v", err, sum)
	}
	var state map[string]any
	if status, body := get("/kar/v1/actor/Cart/c1/state"); status != 200 || json.Unmarshal([]byte(body), &state) != nil {
		t.Fatalf("state: %d %s", status, body)
	}
	want := `{"items":{"sku1":{"qty":2},"sku2":{"qty":1}},"note":"hi","total":42}`
	if got, _ := json.Marshal(state); string(got) != want {
		t.Errorf("state of Cart/c1: %s, want %s", got, want)
	}
	var rem struct {
		Path        string    `json:"path"`
		TargetTime  time.Time `json:"targetTime"`
		Period      int64     `json:"period"`
		EncodedData string    `json:"encodedData"`
	}
	if status, body := get("/kar/v1/actor/Cart/c1/reminders/r1"); status != 200 || json.Unmarshal([]byte(body), &rem) != nil ||
		rem.Path != "/checkout" || !rem.TargetTime.Equal(target) || rem.Period != int64(30*time.Second) || rem.EncodedData != `[{"msg":"hi"}]` {
		t.Errorf("reminder: %d %s", status, body)
	}
	var sub map[string]any
	if status, body := get("/kar/v1/actor/Cart/c1/events/orders"); status != 200 || json.Unmarshal([]byte(body), &sub) != nil ||
		sub["path"] != "/onOrder" || sub["topic"] != "orders" || sub["contenttype"] != "application/json" {
		t.Errorf("subscription: %d %s", status, body)
	}
	if _, body := get("/kar/v1/actor/Cart/c9/state"); strings.TrimSpace(body) != "{}" {
		t.Errorf("another application's state was copied: %s", body)
	}

	// Idempotent: a second run finds everything in kar and changes nothing,
	// also after the application changed its state under kar.
	req := httptest.NewRequest(http.MethodPut, "/kar/v1/actor/Cart/c2/state/total", strings.NewReader("8"))
	routes.ServeHTTP(httptest.NewRecorder(), req)
	sum, err = migrate.Run(ctx, be.Redis, "shop", routes, false)
	if err != nil || sum.Actors != 0 || sum.Reminders != 0 || sum.Subscriptions != 0 || sum.PresentActors != 2 || sum.PresentReminders != 1 || sum.PresentSubs != 1 {
		t.Errorf("second run: %v %+v", err, sum)
	}
	if _, body := get("/kar/v1/actor/Cart/c2/state/total"); strings.TrimSpace(body) != "8" {
		t.Errorf("a second run rolled state back: %s", body)
	}

	// A record kar cannot take is reported, and the rest goes on.
	be.Redis.HSet(ctx, "kar_shop_main_state_Cart_c3", "total__", "not json", "ok__", "1")
	be.Redis.HSet(ctx, "kar_shop_binding_0_reminders_Cart_c3_bad", "actorType", "Cart", "actorId", "c3", "id", "bad", "path", "/x", "targetTime", "yesterday")
	sum, err = migrate.Run(ctx, be.Redis, "shop", routes, false)
	if err != nil || sum.Actors != 1 || sum.StateEntries != 1 || len(sum.Problems) != 2 ||
		!strings.Contains(sum.Problems[0], "does not hold JSON") || !strings.Contains(sum.Problems[1], "targetTime") {
		t.Errorf("bad records: %v %+v", err, sum)
	}
}
