// Package cetest is a strict local test double of the IBM Cloud APIs the
// Code Engine tooling calls: IAM's token endpoint, Resource Controller v2
// (resource keys) and Code Engine v2 (projects, secrets, apps, revisions),
// served by one httptest server over plain HTTP. It follows
// shared/reference/ibm-cloud-knative-apis.md field by field and rejects
// what the real APIs reject: unknown or missing bearer tokens, missing
// `version`, wrong content types, unknown or invalid fields, updates
// without a matching If-Match. Projects and apps move through their
// asynchronous statuses one step per GET, so tests never sleep.
//
// Point a client at it with Env (CODE_ENGINE_URL, ..._AUTH_URL, ...).
package cetest

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Region is the region the double's Code Engine serves.
const Region = "us-south"

// Call is one request the double received, for assertions.
type Call struct {
	Method      string
	Path        string
	Query       url.Values
	ContentType string
	IfMatch     string
	Status      int
}

// Double is the test double. Create it with New; it stops with the test.
type Double struct {
	Server *httptest.Server
	APIKey string // the one API key IAM accepts

	// PageSize caps every list page (default 1, so clients must follow
	// pagination).
	PageSize int
	// ProjectSteps and AppSteps are how many GETs a project stays
	// creating and a revision stays deploying (default 2).
	ProjectSteps, AppSteps int
	// FailImages maps an image reference to the revision failure reason
	// (e.g. fetch_image_failed_unknown_repository) its deployment ends with.
	FailImages map[string]string
	// FailProjects makes projects of these names end in creation_failed.
	FailProjects map[string]bool

	mu       sync.Mutex
	throttle int // the next requests to answer 429
	tokens   map[string]bool
	keys     []resourceKey
	projects map[string]*project // by id
	order    []string            // project ids in creation order
	calls    []Call
	seq      int
}

type project struct {
	data    map[string]any
	steps   int
	secrets map[string]*secret
	apps    map[string]*app
}

type secret struct {
	data map[string]any
	tag  int
}

type app struct {
	fields    map[string]any // the app as stored (request fields + computed)
	tag       int
	revisions []*revision
}

type revision struct {
	name   string
	image  string
	steps  int
	status string
	reason string
}

type resourceKey map[string]any

// New starts the double; the API key it accepts is apiKey.
func New(t interface {
	Cleanup(func())
	Helper()
}, apiKey string) *Double {
	t.Helper()
	d := &Double{
		APIKey:       apiKey,
		PageSize:     1,
		ProjectSteps: 2,
		AppSteps:     2,
		FailImages:   map[string]string{},
		FailProjects: map[string]bool{},
		tokens:       map[string]bool{},
		projects:     map[string]*project{},
	}
	d.Server = httptest.NewServer(http.HandlerFunc(d.serve))
	t.Cleanup(d.Server.Close)
	return d
}

// Env is the environment that points the kar tooling at the double.
func (d *Double) Env() []string {
	u := d.Server.URL
	return []string{
		"IBMCLOUD_API_KEY=" + d.APIKey,
		"IBMCLOUD_REGION=" + Region,
		"CODE_ENGINE_URL=" + u + "/v2",
		"CODE_ENGINE_AUTH_URL=" + u,
		"RESOURCE_CONTROLLER_URL=" + u,
		"RESOURCE_CONTROLLER_AUTH_URL=" + u,
		// No retries against the double: a test wants the first answer.
		"CODE_ENGINE_ENABLE_RETRIES=false",
		"RESOURCE_CONTROLLER_ENABLE_RETRIES=false",
		"KAR_CE_POLL_INTERVAL=10ms",
		// An ibm-credentials.env file would shadow the environment.
		"IBM_CREDENTIALS_FILE=/nonexistent/ibm-credentials.env",
	}
}

// Throttle makes the next n API requests (not IAM's) answer 429 Too Many
// Requests with Retry-After: 0, as a rate-limited platform does.
func (d *Double) Throttle(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.throttle = n
}

// Calls returns the requests received so far.
func (d *Double) Calls() []Call {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Call(nil), d.calls...)
}

// AddResourceKey stores a resource key (service credential) named name on
// the instance sourceCRN.
func (d *Double) AddResourceKey(name, sourceCRN string, credentials map[string]any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	guid := fmt.Sprintf("%08d-0000-4000-8000-%012d", d.seq, d.seq)
	d.keys = append(d.keys, resourceKey{
		"id":          "crn:v1:bluemix:public:resource-key::a/acct::resource-key:" + guid,
		"guid":        guid,
		"name":        name,
		"source_crn":  sourceCRN,
		"state":       "active",
		"credentials": credentials,
	})
}

// AddProject stores an active project and returns its id.
func (d *Double) AddProject(name string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.newProject(name, "")
	p.data["status"] = "active"
	return p.data["id"].(string)
}

// Project returns a copy of a project's JSON fields, or nil.
func (d *Double) Project(name string) map[string]any {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range d.order {
		if p, ok := d.projects[id]; ok && p.data["name"] == name {
			return copyMap(p.data)
		}
	}
	return nil
}

// Secret returns a copy of a secret of a project, or nil.
func (d *Double) Secret(projectName, name string) map[string]any {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.projectByName(projectName)
	if p == nil || p.secrets[name] == nil {
		return nil
	}
	return copyMap(p.secrets[name].data)
}

// App returns a copy of an app of a project as the API would answer it, or nil.
func (d *Double) App(projectName, name string) map[string]any {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.projectByName(projectName)
	if p == nil || p.apps[name] == nil {
		return nil
	}
	return roundTrip(p.apps[name].view())
}

func (d *Double) projectByName(name string) *project {
	for _, id := range d.order {
		if p, ok := d.projects[id]; ok && p.data["name"] == name {
			return p
		}
	}
	return nil
}

// ---- HTTP plumbing ----

// apiError is the IBM error container.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{
		"errors":      []any{map[string]any{"code": code, "message": msg}},
		"trace":       "codeengine-api-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		"status_code": status,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(s int) { r.status = s; r.ResponseWriter.WriteHeader(s) }

func (d *Double) serve(w http.ResponseWriter, r *http.Request) {
	rec := &recorder{ResponseWriter: w, status: 200}
	defer func() {
		d.mu.Lock()
		d.calls = append(d.calls, Call{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(),
			ContentType: r.Header.Get("Content-Type"), IfMatch: r.Header.Get("If-Match"), Status: rec.status})
		d.mu.Unlock()
	}()
	d.mu.Lock()
	throttled := d.throttle > 0 && r.URL.Path != "/identity/token"
	if throttled {
		d.throttle--
	}
	d.mu.Unlock()
	switch {
	case throttled:
		rec.Header().Set("Retry-After", "0")
		writeError(rec, http.StatusTooManyRequests, "rate_limit_exceeded", "Rate limit exceeded, retry later.")
	case r.URL.Path == "/identity/token":
		d.token(rec, r)
	case strings.HasPrefix(r.URL.Path, "/v2/resource_keys"):
		if d.authorized(rec, r) {
			d.resourceKeys(rec, r)
		}
	case strings.HasPrefix(r.URL.Path, "/v2/projects"):
		if d.authorized(rec, r) && d.versioned(rec, r) {
			d.codeEngine(rec, r, strings.TrimPrefix(r.URL.Path, "/v2"))
		}
	default:
		writeError(rec, http.StatusNotFound, "not_found", "Not Found: "+r.URL.Path)
	}
}

// token is IAM's POST /identity/token, API-key grant.
func (d *Double) token(w http.ResponseWriter, r *http.Request) {
	iamErr := func(status int, code, msg string) {
		writeJSON(w, status, map[string]any{"errorCode": code, "errorMessage": msg,
			"context": map[string]any{"requestId": "test"}})
	}
	if r.Method != http.MethodPost {
		iamErr(http.StatusMethodNotAllowed, "BXNIM0100E", "Method not allowed.")
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		iamErr(http.StatusBadRequest, "BXNIM0109E", "Content-Type must be application/x-www-form-urlencoded.")
		return
	}
	if err := r.ParseForm(); err != nil {
		iamErr(http.StatusBadRequest, "BXNIM0109E", "Malformed form body.")
		return
	}
	if r.PostForm.Get("grant_type") != "urn:ibm:params:oauth:grant-type:apikey" {
		iamErr(http.StatusBadRequest, "BXNIM0103E", "Unsupported grant_type.")
		return
	}
	if r.PostForm.Get("response_type") != "cloud_iam" {
		iamErr(http.StatusBadRequest, "BXNIM0109E", "response_type must be cloud_iam.")
		return
	}
	if key := r.PostForm.Get("apikey"); key == "" || key != d.APIKey {
		iamErr(http.StatusBadRequest, "BXNIM0415E", "Provided API key could not be found.")
		return
	}
	d.mu.Lock()
	d.seq++
	tok := fmt.Sprintf("tok-%d-%d", d.seq, time.Now().UnixNano())
	d.tokens[tok] = true
	d.mu.Unlock()
	now := time.Now().Unix()
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok, "refresh_token": "refresh-" + tok, "token_type": "Bearer",
		"expires_in": 3600, "expiration": now + 3600, "scope": "ibm openid",
	})
}

func (d *Double) authorized(w http.ResponseWriter, r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	d.mu.Lock()
	valid := ok && d.tokens[tok]
	d.mu.Unlock()
	if !valid {
		writeError(w, http.StatusUnauthorized, "not_authorized", "The request is not authorized: missing or unknown bearer token.")
	}
	return valid
}

var versionRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)

// versioned checks Code Engine's version query parameter: a date from
// 2021-03-31 to 2026-05-14.
func (d *Double) versioned(w http.ResponseWriter, r *http.Request) bool {
	v := r.URL.Query().Get("version")
	if !versionRE.MatchString(v) || v < "2021-03-31" || v > "2026-05-14" {
		writeError(w, http.StatusBadRequest, "invalid_version", fmt.Sprintf("The version query parameter %q is missing or invalid: give a date between 2021-03-31 and 2026-05-14.", v))
		return false
	}
	return true
}

// decode reads a JSON body of the given content type into a map,
// rejecting fields not in allowed.
func decode(w http.ResponseWriter, r *http.Request, wantType string, allowed map[string]bool) (map[string]any, bool) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != wantType {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", fmt.Sprintf("Content-Type must be %s, not %q.", wantType, r.Header.Get("Content-Type")))
		return nil, false
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "Cannot read the body.")
		return nil, false
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		writeError(w, http.StatusBadRequest, "invalid_json", "The body is not a JSON object.")
		return nil, false
	}
	var unknown []string
	for k := range m {
		if !allowed[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		writeError(w, http.StatusBadRequest, "invalid_field", "Unknown or read-only field(s): "+strings.Join(unknown, ", ")+".")
		return nil, false
	}
	return m, true
}

// page answers one page of items (sorted by the caller) under key.
func (d *Double) page(w http.ResponseWriter, r *http.Request, key string, items []any) {
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			writeError(w, http.StatusBadRequest, "invalid_limit", "limit must be an integer from 1 to 100.")
			return
		}
		limit = n
	}
	if d.PageSize > 0 && limit > d.PageSize {
		limit = d.PageSize
	}
	start := 0
	if s := r.URL.Query().Get("start"); s != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(s, "page-"))
		if err != nil || !strings.HasPrefix(s, "page-") || n < 0 || n > len(items) {
			writeError(w, http.StatusBadRequest, "invalid_start", "start is not a token this API answered.")
			return
		}
		start = n
	}
	end := min(start+limit, len(items))
	base := r.URL.Path + "?limit=" + strconv.Itoa(limit)
	out := map[string]any{key: items[start:end], "limit": limit, "first": map[string]any{"href": d.Server.URL + base}}
	if end < len(items) {
		tok := "page-" + strconv.Itoa(end)
		out["next"] = map[string]any{"href": d.Server.URL + base + "&start=" + tok, "start": tok}
	}
	writeJSON(w, http.StatusOK, out)
}

// ---- Resource Controller ----

func (d *Double) resourceKeys(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != "/v2/resource_keys" {
		writeError(w, http.StatusNotFound, "not_found", "Not Found")
		return
	}
	q := r.URL.Query()
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			writeError(w, http.StatusBadRequest, "invalid_limit", "limit must be an integer from 1 to 100.")
			return
		}
		limit = n
	}
	if d.PageSize > 0 && limit > d.PageSize {
		limit = d.PageSize
	}
	d.mu.Lock()
	var match []any
	for _, k := range d.keys {
		if name := q.Get("name"); name == "" || k["name"] == name {
			match = append(match, roundTrip(map[string]any(k)))
		}
	}
	d.mu.Unlock()
	start := 0
	if s := q.Get("start"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > len(match) {
			writeError(w, http.StatusBadRequest, "invalid_start", "start is not a token this API answered.")
			return
		}
		start = n
	}
	end := min(start+limit, len(match))
	var next any
	if end < len(match) {
		nq := url.Values{"limit": {strconv.Itoa(limit)}, "start": {strconv.Itoa(end)}}
		if name := q.Get("name"); name != "" {
			nq.Set("name", name)
		}
		next = "/v2/resource_keys?" + nq.Encode()
	}
	page := match[start:end]
	if page == nil {
		page = []any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"rows_count": len(page), "next_url": next, "resources": page})
}

// ---- Code Engine ----

var (
	projectNameRE = regexp.MustCompile(`^[a-zA-Z0-9\-._: ]{1,128}$`)
	rgRE          = regexp.MustCompile(`^[a-z0-9]{32}$`)
	secretNameRE  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	dataKeyRE     = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
	appNameRE     = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	envNameRE     = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
	literalRE     = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
	prefixRE      = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	cpuRE         = regexp.MustCompile(`^([0-9.]+)([eEinumkKMGTPB]*)$`)
)

func (d *Double) codeEngine(w http.ResponseWriter, r *http.Request, path string) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	// parts[0] == "projects"
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(parts) == 1 {
		switch r.Method {
		case http.MethodGet:
			var items []any
			for _, id := range d.order {
				if p, ok := d.projects[id]; ok {
					items = append(items, copyMap(p.data))
				}
			}
			d.page(w, r, "projects", items)
		case http.MethodPost:
			d.createProject(w, r)
		default:
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Method not allowed.")
		}
		return
	}
	p, ok := d.projects[parts[1]]
	if !ok {
		writeError(w, http.StatusNotFound, "resource_not_found", "Resource not found.")
		return
	}
	if len(parts) == 2 {
		switch r.Method {
		case http.MethodGet:
			d.advanceProject(p)
			writeJSON(w, http.StatusOK, copyMap(p.data))
		case http.MethodDelete:
			delete(d.projects, parts[1])
			w.WriteHeader(http.StatusAccepted)
		default:
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Method not allowed.")
		}
		return
	}
	if p.data["status"] != "active" {
		writeError(w, http.StatusBadRequest, "project_not_active", "Project is not yet active.")
		return
	}
	switch parts[2] {
	case "secrets":
		d.secrets(w, r, p, parts[3:])
	case "apps":
		d.apps(w, r, p, parts[3:])
	default:
		writeError(w, http.StatusNotFound, "not_found", "Not Found")
	}
}

func (d *Double) newProject(name, rg string) *project {
	d.seq++
	id := fmt.Sprintf("%08x-1111-4222-8333-%012x", d.seq, d.seq)
	if rg == "" {
		rg = strings.Repeat("0", 31) + "1"
	}
	p := &project{
		data: map[string]any{
			"account_id": "acct", "created_at": time.Now().UTC().Format(time.RFC3339),
			"crn":  "crn:v1:bluemix:public:codeengine:" + Region + ":a/acct:" + id + "::",
			"href": d.Server.URL + "/v2/projects/" + id, "id": id, "name": name, "region": Region,
			"resource_group_id": rg, "resource_type": "project_v2", "status": "creating",
		},
		secrets: map[string]*secret{},
		apps:    map[string]*app{},
	}
	d.projects[id] = p
	d.order = append(d.order, id)
	return p
}

func (d *Double) createProject(w http.ResponseWriter, r *http.Request) {
	m, ok := decode(w, r, "application/json", map[string]bool{"name": true, "resource_group_id": true, "tags": true})
	if !ok {
		return
	}
	name, _ := m["name"].(string)
	if !projectNameRE.MatchString(name) {
		writeError(w, http.StatusBadRequest, "invalid_name", "name is required: 1 to 128 characters of [a-zA-Z0-9-._: ].")
		return
	}
	rg, _ := m["resource_group_id"].(string)
	if _, given := m["resource_group_id"]; given && !rgRE.MatchString(rg) {
		writeError(w, http.StatusBadRequest, "invalid_resource_group_id", "resource_group_id must be 32 characters of [a-z0-9].")
		return
	}
	for _, p := range d.projects {
		if p.data["name"] == name {
			writeError(w, http.StatusConflict, "project_name_already_exists", fmt.Sprintf("Project with name '%s' already exists.", name))
			return
		}
	}
	p := d.newProject(name, rg)
	writeJSON(w, http.StatusAccepted, copyMap(p.data))
}

func (d *Double) advanceProject(p *project) {
	if p.data["status"] != "creating" {
		return
	}
	p.steps++
	if p.steps >= d.ProjectSteps {
		if d.FailProjects[p.data["name"].(string)] {
			p.data["status"] = "creation_failed"
		} else {
			p.data["status"] = "active"
		}
	}
}

var secretFormats = map[string]bool{"generic": true, "registry": true, "basic_auth": true, "ssh_auth": true,
	"tls": true, "hmac_auth": true, "other": true, "service_access": true, "service_operator": true}

func (d *Double) secrets(w http.ResponseWriter, r *http.Request, p *project, rest []string) {
	if len(rest) == 0 {
		switch r.Method {
		case http.MethodGet:
			var names []string
			for n := range p.secrets {
				names = append(names, n)
			}
			sort.Strings(names)
			var items []any
			for _, n := range names {
				items = append(items, copyMap(p.secrets[n].data))
			}
			d.page(w, r, "secrets", items)
		case http.MethodPost:
			m, ok := decode(w, r, "application/json", map[string]bool{"name": true, "format": true, "data": true, "service_access": true, "service_operator": true})
			if !ok {
				return
			}
			name, _ := m["name"].(string)
			if !secretNameRE.MatchString(name) || len(name) > 253 {
				writeError(w, http.StatusBadRequest, "invalid_name", "name is required and must be a lower-case DNS subdomain of at most 253 characters.")
				return
			}
			if p.secrets[name] != nil {
				writeError(w, http.StatusConflict, "secret_already_exists", fmt.Sprintf("Secret '%s' already exists.", name))
				return
			}
			format, _ := m["format"].(string)
			if !secretFormats[format] {
				writeError(w, http.StatusBadRequest, "invalid_format", "format is required: generic, registry, basic_auth, ssh_auth, tls, hmac_auth, other, service_access or service_operator.")
				return
			}
			data, msg := checkSecretData(format, m["data"])
			if msg != "" {
				writeError(w, http.StatusBadRequest, "invalid_data", msg)
				return
			}
			d.seq++
			s := &secret{tag: 1, data: map[string]any{
				"created_at": time.Now().UTC().Format(time.RFC3339), "data": data, "format": format,
				"generated_by": "user", "href": d.Server.URL + "/v2/projects/" + p.data["id"].(string) + "/secrets/" + name,
				"id": fmt.Sprintf("sec-%d", d.seq), "name": name, "project_id": p.data["id"], "region": Region,
				"resource_type": "secret_" + format + "_v2",
			}}
			s.data["entity_tag"] = strconv.Itoa(s.tag)
			p.secrets[name] = s
			writeSecret(w, http.StatusCreated, s)
		default:
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Method not allowed.")
		}
		return
	}
	s := p.secrets[rest[0]]
	if len(rest) != 1 || s == nil {
		writeError(w, http.StatusNotFound, "resource_not_found", "Resource not found.")
		return
	}
	switch r.Method {
	case http.MethodGet:
		writeSecret(w, http.StatusOK, s)
	case http.MethodPut:
		if !checkIfMatch(w, r, s.tag) {
			return
		}
		m, ok := decode(w, r, "application/json", map[string]bool{"format": true, "data": true, "service_access": true, "service_operator": true})
		if !ok {
			return
		}
		if f, _ := m["format"].(string); f != s.data["format"] {
			writeError(w, http.StatusBadRequest, "invalid_format", fmt.Sprintf("format is required and must stay %s.", s.data["format"]))
			return
		}
		data, msg := checkSecretData(s.data["format"].(string), m["data"])
		if msg != "" {
			writeError(w, http.StatusBadRequest, "invalid_data", msg)
			return
		}
		s.tag++
		s.data["data"] = data
		s.data["entity_tag"] = strconv.Itoa(s.tag)
		writeSecret(w, http.StatusOK, s)
	case http.MethodDelete:
		delete(p.secrets, rest[0])
		w.WriteHeader(http.StatusAccepted)
	default:
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Method not allowed.")
	}
}

func writeSecret(w http.ResponseWriter, status int, s *secret) {
	w.Header().Set("ETag", strconv.Itoa(s.tag))
	writeJSON(w, status, copyMap(s.data))
}

func checkIfMatch(w http.ResponseWriter, r *http.Request, tag int) bool {
	im := r.Header.Get("If-Match")
	switch {
	case im == "":
		writeError(w, http.StatusBadRequest, "missing_if_match", "The If-Match header is required: send the entity tag of the resource, or *.")
		return false
	case im != "*" && im != strconv.Itoa(tag):
		writeError(w, http.StatusPreconditionFailed, "precondition_failed", "The If-Match entity tag does not match the current version of the resource.")
		return false
	}
	return true
}

func checkSecretData(format string, v any) (map[string]any, string) {
	data, ok := v.(map[string]any)
	if !ok {
		return nil, "data is required and must be an object of string values."
	}
	for k, val := range data {
		s, ok := val.(string)
		if !ok {
			return nil, fmt.Sprintf("data.%s must be a string.", k)
		}
		if !dataKeyRE.MatchString(k) || len(k) > 253 {
			return nil, fmt.Sprintf("data key %q must match ^[-._a-zA-Z0-9]+$ (at most 253 characters).", k)
		}
		if len(s) > 1048576 {
			return nil, fmt.Sprintf("data.%s is longer than 1048576 characters.", k)
		}
	}
	if format == "registry" {
		for _, k := range []string{"server", "username", "password"} {
			if data[k] == nil {
				return nil, "a registry secret needs data.server, data.username and data.password."
			}
		}
	}
	return data, ""
}

// appFields are the request fields of an app (create; patch minus name).
var appFields = map[string]bool{
	"name": true, "image_reference": true, "image_port": true, "image_secret": true,
	"managed_domain_mappings": true, "run_commands": true, "run_arguments": true,
	"run_env_variables": true, "run_as_user": true, "run_service_account": true,
	"run_volume_mounts": true, "run_compute_resource_token_enabled": true,
	"scale_min_instances": true, "scale_max_instances": true, "scale_initial_instances": true,
	"scale_cpu_limit": true, "scale_memory_limit": true, "scale_ephemeral_storage_limit": true,
	"scale_concurrency": true, "scale_concurrency_target": true, "scale_request_timeout": true,
	"scale_down_delay": true, "probe_readiness": true, "probe_liveness": true,
}

func appDefaults() map[string]any {
	return map[string]any{
		"image_port": 8080.0, "managed_domain_mappings": "local_public", "run_as_user": 0.0,
		"run_service_account": "default", "scale_min_instances": 0.0, "scale_max_instances": 10.0,
		"scale_initial_instances": 1.0, "scale_cpu_limit": "1", "scale_memory_limit": "4G",
		"scale_ephemeral_storage_limit": "400M", "scale_concurrency": 100.0, "scale_request_timeout": 300.0,
		"scale_down_delay": 0.0, "run_env_variables": []any{}, "run_commands": []any{}, "run_arguments": []any{},
	}
}

func (d *Double) apps(w http.ResponseWriter, r *http.Request, p *project, rest []string) {
	if len(rest) == 0 {
		switch r.Method {
		case http.MethodGet:
			var names []string
			for n := range p.apps {
				names = append(names, n)
			}
			sort.Strings(names)
			var items []any
			for _, n := range names {
				d.advanceApp(p.apps[n])
				items = append(items, roundTrip(p.apps[n].view()))
			}
			d.page(w, r, "apps", items)
		case http.MethodPost:
			m, ok := decode(w, r, "application/json", appFields)
			if !ok {
				return
			}
			name, _ := m["name"].(string)
			if !appNameRE.MatchString(name) || len(name) > 63 {
				writeError(w, http.StatusBadRequest, "invalid_name", "name is required: at most 63 characters matching ^[a-z]([-a-z0-9]*[a-z0-9])?$.")
				return
			}
			if p.apps[name] != nil {
				writeError(w, http.StatusConflict, "app_already_exists", fmt.Sprintf("Application '%s' already exists within project '%s', please select a unique name.", name, p.data["name"]))
				return
			}
			fields := appDefaults()
			for k, v := range m {
				fields[k] = v
			}
			if msg := checkApp(fields, p); msg != "" {
				writeError(w, http.StatusBadRequest, "invalid_field", msg)
				return
			}
			d.seq++
			fields["id"] = fmt.Sprintf("app-%d", d.seq)
			fields["created_at"] = time.Now().UTC().Format(time.RFC3339)
			a := &app{fields: fields}
			p.apps[name] = a
			d.newRevision(p, a)
			writeApp(w, http.StatusCreated, a)
		default:
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Method not allowed.")
		}
		return
	}
	a := p.apps[rest[0]]
	if a == nil {
		writeError(w, http.StatusNotFound, "resource_not_found", "Resource not found.")
		return
	}
	if len(rest) == 3 && rest[1] == "revisions" && r.Method == http.MethodGet {
		for _, rev := range a.revisions {
			if rev.name == rest[2] {
				writeJSON(w, http.StatusOK, rev.view(a, p))
				return
			}
		}
		writeError(w, http.StatusNotFound, "resource_not_found", "Resource not found.")
		return
	}
	if len(rest) != 1 {
		writeError(w, http.StatusNotFound, "not_found", "Not Found")
		return
	}
	switch r.Method {
	case http.MethodGet:
		d.advanceApp(a)
		writeApp(w, http.StatusOK, a)
	case http.MethodPatch:
		if !checkIfMatch(w, r, a.tag) {
			return
		}
		patchable := map[string]bool{}
		for k := range appFields {
			patchable[k] = k != "name"
		}
		m, ok := decode(w, r, "application/merge-patch+json", patchable)
		if !ok {
			return
		}
		fields := copyMap(a.fields)
		for k, v := range m {
			if v == nil { // JSON merge patch: null removes
				delete(fields, k)
				if def, ok := appDefaults()[k]; ok {
					fields[k] = def
				}
				continue
			}
			fields[k] = v
		}
		if msg := checkApp(fields, p); msg != "" {
			writeError(w, http.StatusBadRequest, "invalid_field", msg)
			return
		}
		a.fields = fields
		d.newRevision(p, a)
		writeApp(w, http.StatusOK, a)
	case http.MethodDelete:
		if v := r.URL.Query().Get("keep_service_access"); v != "" && v != "true" && v != "false" {
			writeError(w, http.StatusBadRequest, "invalid_query", "keep_service_access must be true or false.")
			return
		}
		delete(p.apps, rest[0])
		w.WriteHeader(http.StatusAccepted)
	default:
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Method not allowed.")
	}
}

func intField(f map[string]any, k string, lo, hi float64) (float64, string) {
	v, ok := f[k].(float64)
	if !ok || v != float64(int64(v)) || v < lo || v > hi {
		return 0, fmt.Sprintf("%s must be an integer from %v to %v.", k, lo, hi)
	}
	return v, ""
}

// checkApp validates a whole app against the documented constraints.
func checkApp(f map[string]any, p *project) string {
	img, _ := f["image_reference"].(string)
	if img == "" || len(img) > 256 || strings.ContainsAny(img, " \t") {
		return "image_reference is required: REGISTRY/NAMESPACE/REPOSITORY:TAG, at most 256 characters."
	}
	if _, msg := intField(f, "image_port", 0, 65535); msg != "" {
		return msg
	}
	if s, given := f["image_secret"]; given {
		name, _ := s.(string)
		if !secretNameRE.MatchString(name) {
			return "image_secret must be a secret name."
		}
		sec := p.secrets[name]
		if sec == nil || sec.data["format"] != "registry" {
			return fmt.Sprintf("image_secret '%s' is not a registry secret of this project.", name)
		}
	}
	switch f["managed_domain_mappings"] {
	case "local", "local_private", "local_public":
	default:
		return "managed_domain_mappings must be local, local_private or local_public."
	}
	minS, msg := intField(f, "scale_min_instances", 0, 250)
	if msg != "" {
		return msg
	}
	maxS, msg := intField(f, "scale_max_instances", 0, 250)
	if msg != "" {
		return msg
	}
	if _, msg := intField(f, "scale_initial_instances", 0, 250); msg != "" {
		return msg
	}
	if maxS != 0 && minS > maxS {
		return "scale_min_instances must not exceed scale_max_instances."
	}
	if s, _ := f["scale_cpu_limit"].(string); !cpuRE.MatchString(s) {
		return "scale_cpu_limit must match ^([0-9.]+)([eEinumkKMGTPB]*)$."
	}
	envs, ok := f["run_env_variables"].([]any)
	if !ok || len(envs) > 100 {
		return "run_env_variables must be a list of at most 100 entries."
	}
	for i, e := range envs {
		if msg := checkEnv(i, e, p); msg != "" {
			return msg
		}
	}
	for _, k := range []string{"run_commands", "run_arguments"} {
		if l, ok := f[k].([]any); !ok || len(l) > 100 {
			return k + " must be a list of at most 100 strings."
		}
	}
	return ""
}

func checkEnv(i int, e any, p *project) string {
	m, ok := e.(map[string]any)
	if !ok {
		return fmt.Sprintf("run_env_variables[%d] must be an object.", i)
	}
	allowed := map[string]bool{"type": true, "name": true, "value": true, "reference": true, "key": true, "prefix": true}
	for k := range m {
		if !allowed[k] {
			return fmt.Sprintf("run_env_variables[%d].%s is not a field of an environment variable.", i, k)
		}
	}
	typ, _ := m["type"].(string)
	if typ == "" {
		typ = "literal"
	}
	name, _ := m["name"].(string)
	ref, _ := m["reference"].(string)
	switch typ {
	case "literal":
		if !envNameRE.MatchString(name) || len(name) > 253 {
			return fmt.Sprintf("run_env_variables[%d].name must match ^[-._a-zA-Z0-9]+$.", i)
		}
		value, _ := m["value"].(string)
		if !literalRE.MatchString(value) || len(value) > 253 {
			return fmt.Sprintf("run_env_variables[%d].value (variable %s) must match ^[-._a-zA-Z0-9]+$ (at most 253 characters).", i, name)
		}
	case "secret_full_reference", "config_map_full_reference":
		if !secretNameRE.MatchString(ref) {
			return fmt.Sprintf("run_env_variables[%d].reference must be a secret or config map name.", i)
		}
		if pre, given := m["prefix"].(string); given && !prefixRE.MatchString(pre) {
			return fmt.Sprintf("run_env_variables[%d].prefix must match ^[a-zA-Z_][a-zA-Z0-9_]*$.", i)
		}
	case "secret_key_reference", "config_map_key_reference":
		key, _ := m["key"].(string)
		if !secretNameRE.MatchString(ref) || !envNameRE.MatchString(key) || !envNameRE.MatchString(name) {
			return fmt.Sprintf("run_env_variables[%d] needs name, reference and key.", i)
		}
	default:
		return fmt.Sprintf("run_env_variables[%d].type %q is not literal, secret_full_reference, secret_key_reference, config_map_full_reference or config_map_key_reference.", i, typ)
	}
	return ""
}

func (d *Double) newRevision(p *project, a *app) {
	a.tag++
	name := a.fields["name"].(string)
	img := a.fields["image_reference"].(string)
	rev := &revision{name: fmt.Sprintf("%s-%05d", name, len(a.revisions)+1), image: img, status: "loading", reason: "deploying"}
	a.revisions = append(a.revisions, rev)
}

// advanceApp moves the latest revision one step towards ready or failed.
func (d *Double) advanceApp(a *app) {
	rev := a.revisions[len(a.revisions)-1]
	if rev.status != "loading" {
		return
	}
	rev.steps++
	if rev.steps < d.AppSteps {
		return
	}
	if reason, fail := d.FailImages[rev.image]; fail {
		rev.status, rev.reason = "failed", reason
		return
	}
	rev.status, rev.reason = "ready", "ready"
}

func (a *app) view() map[string]any {
	v := copyMap(a.fields)
	name := a.fields["name"].(string)
	latest := a.revisions[len(a.revisions)-1]
	var ready *revision
	for i := len(a.revisions) - 1; i >= 0; i-- {
		if a.revisions[i].status == "ready" {
			ready = a.revisions[i]
			break
		}
	}
	details := map[string]any{"latest_created_revision": latest.name}
	switch {
	case latest.status == "ready":
		v["status"], details["reason"] = "ready", "ready"
	case latest.status == "failed" && ready != nil:
		v["status"], details["reason"] = "warning", "ready_but_latest_revision_failed"
	case latest.status == "failed":
		v["status"], details["reason"] = "failed", "no_revision_ready"
	default:
		v["status"], details["reason"] = "deploying", "deploying"
	}
	if ready != nil {
		details["latest_ready_revision"] = ready.name
	}
	v["status_details"] = details
	v["entity_tag"] = strconv.Itoa(a.tag)
	v["resource_type"] = "app_v2"
	v["region"] = Region
	v["endpoint_internal"] = "http://" + name + ".abcdef.svc.cluster.local"
	switch v["managed_domain_mappings"] {
	case "local":
		v["endpoint"] = ""
	case "local_private":
		v["endpoint"] = "https://" + name + ".abcdef.private." + Region + ".codeengine.appdomain.cloud"
	default:
		v["endpoint"] = "https://" + name + ".abcdef." + Region + ".codeengine.appdomain.cloud"
	}
	v["computed_env_variables"] = []any{
		map[string]any{"type": "literal", "name": "CE_APP", "value": name},
		map[string]any{"type": "literal", "name": "CE_REGION", "value": Region},
	}
	return v
}

func (rev *revision) view(a *app, p *project) map[string]any {
	instances := 0
	if rev.status == "ready" {
		instances = int(a.fields["scale_min_instances"].(float64))
	}
	return map[string]any{
		"name": rev.name, "app_name": a.fields["name"], "image_reference": rev.image,
		"project_id": p.data["id"], "region": Region, "resource_type": "app_revision_v2",
		"status":         rev.status,
		"status_details": map[string]any{"reason": rev.reason, "actual_instances": instances},
	}
}

func writeApp(w http.ResponseWriter, status int, a *app) {
	w.Header().Set("ETag", strconv.Itoa(a.tag))
	writeJSON(w, status, roundTrip(a.view()))
}

func copyMap(m map[string]any) map[string]any {
	return roundTrip(m)
}

// roundTrip deep-copies JSON-shaped data.
func roundTrip(m map[string]any) map[string]any {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // only JSON-shaped data is stored
	}
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}
