package events

import (
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// TestSubscribeAnswersAsKAR: PUT .../events/{subscriptionId} answers as
// KAR 1.3.10 does, over HTTP/1.1 and h2c: 204 to a new subscription, 200
// "OK" to a replaced one, text/plain both. KAR's Python SDK returns the
// text of a text/plain answer but the raw response object when there is no
// Content-Type, which an app cannot serialise.
func TestSubscribeAnswersAsKAR(t *testing.T) {
	w := newWorld(t)
	s, _ := w.service(t, "sc-put", nil)
	mux := http.NewServeMux()
	s.Register(mux)
	srv := testenv.H2CServer(t, mux)

	clients := []struct {
		name   string
		client *http.Client
		proto  int
	}{{"HTTP/1.1", srv.Client(), 1}, {"h2c", testenv.H2CClient(30 * time.Second), 2}}

	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			base := srv.URL + "/kar/v1/actor/Sub/" + strings.ReplaceAll(c.name, "/", "") + "/events/s1"
			steps := []struct {
				name, body string
				status     int
				wantBody   string
			}{
				{"new subscription", `{"path":"/on","topic":"t1"}`, http.StatusNoContent, ""},
				{"the same again", `{"path":"/on","topic":"t1"}`, http.StatusOK, "OK"},
				{"moved to another topic", `{"path":"/on","topic":"t2"}`, http.StatusOK, "OK"},
			}
			for _, st := range steps {
				req, err := http.NewRequest(http.MethodPut, base, strings.NewReader(st.body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := c.client.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.ProtoMajor != c.proto {
					t.Fatalf("%s: answered over HTTP/%d, want %d", st.name, resp.ProtoMajor, c.proto)
				}
				ct := resp.Header.Values("Content-Type")
				if resp.StatusCode != st.status || len(ct) != 1 || !strings.HasPrefix(ct[0], "text/plain") || string(body) != st.wantBody {
					t.Fatalf("%s: %d %v %q, want %d text/plain %q", st.name, resp.StatusCode, ct, body, st.status, st.wantBody)
				}
			}
		})
	}

	// kar-sdk's events.subscribe returns what it returns with KAR:
	// undefined for a new subscription, "OK" for a replaced one.
	got := testenv.RunKarSDK(t, testenv.KarSDK(t), srv, `
const { events } = require('kar-sdk')
const a = { kar: { type: 'Sub', id: 'sdk-put' } }
;(async () => {
  const first = await events.subscribe(a, 'onNews', 'news')
  const again = await events.subscribe(a, 'onNews', 'news')
  console.log(JSON.stringify({ first: first === undefined ? '<undefined>' : first, again }))
  process.exit(0)
})().catch(err => { console.error(err); process.exit(1) })
`)
	if want := map[string]any{"first": "<undefined>", "again": "OK"}; !reflect.DeepEqual(got, want) {
		t.Errorf("kar-sdk events.subscribe: got %v, want %v", got, want)
	}
}
