package api_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// TestServiceReplyContentType: what a real client gets from a real `kar
// run` when the component's reply has no Content-Type (or an empty one), a
// JSON one, or no body, over HTTP/1.1 and h2c. KAR's Python SDK decides
// what to hand the app by that header: the raw response when it is absent
// or empty, so the sidecar must not add one.
func TestServiceReplyContentType(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a sidecar")
	}
	component := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/none":
			w.Header()["Content-Type"] = nil // the component itself sends none
			w.Write([]byte(`{"a":1}`))
		case "/empty":
			w.Header()["Content-Type"] = []string{""}
			w.Write([]byte("hello"))
		case "/json":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"a":1}`))
		case "/nobody":
			w.WriteHeader(http.StatusOK)
		default:
			http.NotFound(w, r)
		}
	}))
	defer component.Close()
	appPort := component.Listener.Addr().(*net.TCPAddr).Port

	b := testenv.Backend(t)
	runtimePort := testenv.FreePort(t)
	testenv.Start(t, "sidecar", b.Env(), "", testenv.KarBin(t), "run", "-app", "reply-ct", "-service", "svc",
		"-app_port", strconv.Itoa(appPort), "-runtime_port", strconv.Itoa(runtimePort))
	base := "http://127.0.0.1:" + strconv.Itoa(runtimePort) + "/kar/v1/service/svc/call"

	clients := []struct {
		name   string
		client *http.Client
		proto  int
	}{
		{"HTTP/1.1", &http.Client{Timeout: 30 * time.Second}, 1},
		{"h2c", testenv.H2CClient(30 * time.Second), 2},
	}
	// The service is reachable once the sidecar has joined.
	testenv.Eventually(t, 30*time.Second, func() bool {
		resp, err := clients[0].client.Get(base + "/json")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "service svc answers through the sidecar")

	tests := []struct {
		path     string
		wantCT   []string // nil: no Content-Type header at all
		wantBody string
	}{
		{"/none", nil, `{"a":1}`},
		{"/empty", []string{""}, "hello"},
		{"/json", []string{"application/json"}, `{"a":1}`},
		{"/nobody", nil, ""},
	}
	for _, c := range clients {
		for _, tt := range tests {
			t.Run(c.name+tt.path, func(t *testing.T) {
				resp, err := c.client.Get(base + tt.path)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.ProtoMajor != c.proto {
					t.Fatalf("answered over HTTP/%d, want %d", resp.ProtoMajor, c.proto)
				}
				ct, present := resp.Header["Content-Type"]
				if resp.StatusCode != http.StatusOK || string(body) != tt.wantBody {
					t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, tt.wantBody)
				}
				if tt.wantCT == nil && present {
					t.Fatalf("Content-Type %q reached the caller; the component sent none", ct)
				}
				if tt.wantCT != nil && (len(ct) != len(tt.wantCT) || ct[0] != tt.wantCT[0]) {
					t.Fatalf("Content-Type %q, want %q", ct, tt.wantCT)
				}
			})
		}
	}
}
