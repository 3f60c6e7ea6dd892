package entrypoint

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// stage is one FROM ... AS name block of the Dockerfile.
type stage struct {
	from  string
	lines []string
}

func dockerfileStages(t *testing.T) map[string]*stage {
	t.Helper()
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stages := map[string]*stage{}
	var cur *stage
	fromRE := regexp.MustCompile(`(?i)^FROM\s+(\S+)\s+AS\s+(\S+)\s*$`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(strings.ToUpper(line), "FROM ") {
			m := fromRE.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("Dockerfile: unnamed stage %q: name every stage", line)
			}
			if stages[m[2]] != nil {
				t.Fatalf("Dockerfile: stage %s defined twice", m[2])
			}
			cur = &stage{from: m[1]}
			stages[m[2]] = cur
			continue
		}
		if cur != nil {
			cur.lines = append(cur.lines, line)
		}
	}
	return stages
}

// effective returns the last value of an instruction in a stage, following
// FROM <stage> inheritance.
func effective(stages map[string]*stage, name, instr string) string {
	for s := stages[name]; s != nil; s = stages[s.from] {
		for i := len(s.lines) - 1; i >= 0; i-- {
			if v, ok := strings.CutPrefix(s.lines[i], instr+" "); ok {
				return v
			}
		}
	}
	return ""
}

// TestDockerfileServesMakefile: every stage `make docker` builds exists,
// runs as a numeric non-root user, and the base images use kar entrypoint.
func TestDockerfileServesMakefile(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	stages := dockerfileStages(t)
	cmd := exec.Command("make", "-n", "-C", "..", "docker", "DOCKER=docker", "VERSION=test")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make -n docker: %v\n%s", err, out)
	}
	targetRE := regexp.MustCompile(`--target (\S+)(?: --build-arg EXAMPLE=(\S+))? -t (\S+) \.`)
	images := map[string]string{}
	for _, m := range targetRE.FindAllStringSubmatch(string(out), -1) {
		target, example, image := m[1], m[2], m[3]
		images[image] = target
		if stages[target] == nil {
			t.Errorf("make docker builds --target %s, which the Dockerfile does not define", target)
			continue
		}
		user := effective(stages, target, "USER")
		if !regexp.MustCompile(`^[1-9][0-9]*(:[0-9]+)?$`).MatchString(user) {
			t.Errorf("stage %s runs as USER %q: want a numeric non-root user", target, user)
		}
		if example != "" {
			if _, err := os.Stat("../examples/" + example); err != nil {
				t.Errorf("image %s: no example %s", image, example)
			}
			if !strings.HasPrefix(image, "localhost:5000/kar/examples/"+example+":") {
				t.Errorf("example image %s: want localhost:5000/kar/examples/%s", image, example)
			}
		}
	}
	for _, want := range []string{"localhost:5000/kar/kar:latest", "localhost:5000/kar/kar-injector:latest"} {
		if images[want] == "" {
			t.Errorf("make docker does not build %s; it builds %v", want, images)
		}
	}
	if !strings.Contains(string(out), "docker push localhost:5000/kar/kar:latest") {
		t.Errorf("make docker does not push to localhost:5000:\n%s", out)
	}
	for _, base := range []string{"kar-js", "kar-go"} {
		if got := effective(stages, base, "ENTRYPOINT"); got != `["/kar/bin/kar", "entrypoint", "--"]` {
			t.Errorf("stage %s ENTRYPOINT %s", base, got)
		}
	}
	for _, s := range []string{"kar", "kar-js", "kar-go"} {
		found := false
		for _, l := range stages[s].lines {
			if strings.HasPrefix(l, "COPY --from=build /out/kar /kar/bin/kar") {
				found = true
			}
		}
		if !found {
			t.Errorf("stage %s lacks /kar/bin/kar", s)
		}
	}
	// REGISTRY is overridable.
	out, err = exec.Command("make", "-n", "-C", "..", "docker", "DOCKER=docker", "REGISTRY=us.icr.io/space").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "-t us.icr.io/space/kar/kar:latest") {
		t.Errorf("REGISTRY override: %v\n%s", err, out)
	}
}
