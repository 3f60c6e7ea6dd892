package kafka

import (
	"strings"
	"testing"
)

func TestValidEventTopic(t *testing.T) {
	for _, tc := range []struct {
		topic string
		ok    bool
	}{
		{"orders", true},
		{"Orders.v2_x-y", true},
		{strings.Repeat("a", 249), true},
		{"", false},
		{".", false},
		{"..", false},
		{strings.Repeat("a", 250), false},
		{"__kar_mesh_A", false},
		{"__kar", false},
		{"__karate", false},
		{"a/b", false},
		{"a b", false},
		{"é", false},
		{"a\x00", false},
	} {
		err := ValidEventTopic(tc.topic)
		if (err == nil) != tc.ok {
			t.Errorf("ValidEventTopic(%q) = %v, want ok=%v", tc.topic, err, tc.ok)
		}
	}
}

// No application's topics can be named by another application or by a
// user event topic (defect: "kar_A_event_orders" was also the mesh topic
// of the application "A_event_orders").
func TestTopicNamesInjective(t *testing.T) {
	apps := []string{"A", "A_event_orders", "A_mesh_B", "mesh_A", "dead_A", "_mesh_A", "a.b", "a_b", "A_dead_x"}
	seen := map[string]string{}
	add := func(name, what string) {
		if prev, ok := seen[name]; ok {
			t.Errorf("topic %q is both %s and %s", name, prev, what)
		}
		seen[name] = what
	}
	for _, app := range apps {
		add(Topic(app), "mesh topic of "+app)
		add(DeadLetterTopic(app), "dead-letter topic of "+app)
	}
	for name := range seen {
		if ValidEventTopic(EventTopic(name)) == nil {
			t.Errorf("user event topic %q may name kar's own topic", name)
		}
	}
}
