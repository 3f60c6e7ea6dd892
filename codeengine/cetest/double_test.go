package cetest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The double must reject what the real APIs reject, or the client tests
// prove nothing. Each case is one raw request.
func TestDoubleIsStrict(t *testing.T) {
	d := New(t, "key")
	pid := d.AddProject("p")
	form := url.Values{"grant_type": {"urn:ibm:params:oauth:grant-type:apikey"}, "apikey": {"key"}, "response_type": {"cloud_iam"}}
	resp, err := http.Post(d.Server.URL+"/identity/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		Expiration  int64  `json:"expiration"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if tok.AccessToken == "" || tok.ExpiresIn != 3600 || tok.Expiration == 0 {
		t.Fatalf("token answer %+v", tok)
	}
	auth := "Bearer " + tok.AccessToken
	v := "?version=2024-05-13"
	base := d.Server.URL + "/v2/projects/" + pid

	type req struct {
		name, method, url, ctype, ifMatch, auth, body string
		status                                        int
		code                                          string
	}
	cases := []req{
		{name: "wrong API key", method: "POST", url: d.Server.URL + "/identity/token", ctype: "application/x-www-form-urlencoded",
			body: strings.Replace(form.Encode(), "apikey=key", "apikey=nope", 1), status: 400, code: "BXNIM0415E"},
		{name: "no token", method: "GET", url: d.Server.URL + "/v2/projects" + v, status: 401, code: "not_authorized"},
		{name: "forged token", method: "GET", url: d.Server.URL + "/v2/projects" + v, auth: "Bearer forged", status: 401, code: "not_authorized"},
		{name: "no version", method: "GET", url: d.Server.URL + "/v2/projects", auth: auth, status: 400, code: "invalid_version"},
		{name: "future version", method: "GET", url: d.Server.URL + "/v2/projects?version=2030-01-01", auth: auth, status: 400, code: "invalid_version"},
		{name: "resource keys without token", method: "GET", url: d.Server.URL + "/v2/resource_keys?name=x", status: 401, code: "not_authorized"},
		{name: "project without name", method: "POST", url: d.Server.URL + "/v2/projects" + v, auth: auth, ctype: "application/json", body: `{}`, status: 400, code: "invalid_name"},
		{name: "duplicate project", method: "POST", url: d.Server.URL + "/v2/projects" + v, auth: auth, ctype: "application/json", body: `{"name":"p"}`, status: 409},
		{name: "form body", method: "POST", url: base + "/secrets" + v, auth: auth, ctype: "application/x-www-form-urlencoded", body: `{}`, status: 415},
		{name: "unknown field", method: "POST", url: base + "/secrets" + v, auth: auth, ctype: "application/json", body: `{"name":"s","format":"generic","data":{},"colour":"red"}`, status: 400, code: "invalid_field"},
		{name: "bad secret name", method: "POST", url: base + "/secrets" + v, auth: auth, ctype: "application/json", body: `{"name":"S_1","format":"generic","data":{}}`, status: 400, code: "invalid_name"},
		{name: "bad data key", method: "POST", url: base + "/secrets" + v, auth: auth, ctype: "application/json", body: `{"name":"s","format":"generic","data":{"a b":"x"}}`, status: 400, code: "invalid_data"},
		{name: "secret created", method: "POST", url: base + "/secrets" + v, auth: auth, ctype: "application/json", body: `{"name":"s","format":"generic","data":{"A":"x y"}}`, status: 201},
		{name: "replace without If-Match", method: "PUT", url: base + "/secrets/s" + v, auth: auth, ctype: "application/json", body: `{"format":"generic","data":{}}`, status: 400, code: "missing_if_match"},
		{name: "replace with stale If-Match", method: "PUT", url: base + "/secrets/s" + v, auth: auth, ctype: "application/json", ifMatch: "7", body: `{"format":"generic","data":{}}`, status: 412},
		{name: "replace with name in body", method: "PUT", url: base + "/secrets/s" + v, auth: auth, ctype: "application/json", ifMatch: "1", body: `{"name":"s","format":"generic","data":{}}`, status: 400},
		{name: "replace", method: "PUT", url: base + "/secrets/s" + v, auth: auth, ctype: "application/json", ifMatch: "1", body: `{"format":"generic","data":{"B":"1"}}`, status: 200},
		{name: "app without image", method: "POST", url: base + "/apps" + v, auth: auth, ctype: "application/json", body: `{"name":"a"}`, status: 400},
		{name: "literal with a space", method: "POST", url: base + "/apps" + v, auth: auth, ctype: "application/json",
			body: `{"name":"a","image_reference":"i","run_env_variables":[{"type":"literal","name":"X","value":"a b"}]}`, status: 400},
		{name: "min above max", method: "POST", url: base + "/apps" + v, auth: auth, ctype: "application/json",
			body: `{"name":"a","image_reference":"i","scale_min_instances":3,"scale_max_instances":2}`, status: 400},
		{name: "missing registry secret", method: "POST", url: base + "/apps" + v, auth: auth, ctype: "application/json",
			body: `{"name":"a","image_reference":"i","image_secret":"nope"}`, status: 400},
		{name: "app created", method: "POST", url: base + "/apps" + v, auth: auth, ctype: "application/json",
			body: `{"name":"a","image_reference":"i","run_env_variables":[{"type":"secret_full_reference","reference":"s"},{"name":"X","value":"y"}]}`, status: 201},
		{name: "patch as json", method: "PATCH", url: base + "/apps/a" + v, auth: auth, ctype: "application/json", ifMatch: "1", body: `{"image_port":9000}`, status: 415},
		{name: "patch without If-Match", method: "PATCH", url: base + "/apps/a" + v, auth: auth, ctype: "application/merge-patch+json", body: `{"image_port":9000}`, status: 400},
		{name: "patch the name", method: "PATCH", url: base + "/apps/a" + v, auth: auth, ctype: "application/merge-patch+json", ifMatch: "1", body: `{"name":"b"}`, status: 400},
		{name: "patch", method: "PATCH", url: base + "/apps/a" + v, auth: auth, ctype: "application/merge-patch+json", ifMatch: "*", body: `{"image_port":9000}`, status: 200},
		{name: "unknown app", method: "GET", url: base + "/apps/zz" + v, auth: auth, status: 404, code: "resource_not_found"},
		{name: "unknown project", method: "GET", url: d.Server.URL + "/v2/projects/nope" + v, auth: auth, status: 404, code: "resource_not_found"},
	}
	for _, c := range cases {
		r, err := http.NewRequest(c.method, c.url, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if c.ctype != "" {
			r.Header.Set("Content-Type", c.ctype)
		}
		if c.ifMatch != "" {
			r.Header.Set("If-Match", c.ifMatch)
		}
		if c.auth != "" {
			r.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d: %s", c.name, resp.StatusCode, c.status, b)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); len(b) > 0 && ct != "application/json" {
			t.Errorf("%s: Content-Type %q", c.name, ct)
		}
		if c.code != "" && !strings.Contains(string(b), `"`+c.code+`"`) {
			t.Errorf("%s: body %s lacks code %s", c.name, b, c.code)
		}
		if c.status >= 400 && !strings.HasPrefix(c.url, d.Server.URL+"/identity") && !strings.Contains(string(b), `"errors":[{"code"`) {
			t.Errorf("%s: body %s is not in the IBM error format", c.name, b)
		}
	}
	if got := d.App("p", "a"); got["image_port"] != 9000.0 || got["status"] != "deploying" || got["entity_tag"] != "2" {
		t.Errorf("patched app %v", got)
	}
}
