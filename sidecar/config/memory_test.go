package config

import "testing"

func TestParseMemoryLimit(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{in: "18MiB", want: 18 << 20},
		{in: "1GiB", want: 1 << 30},
		{in: "1.5MiB", wantErr: true}, // below 4 MiB
		{in: "24.5MiB", want: 24<<20 + 512<<10},
		{in: "50000000", want: 50000000},
		{in: "64MB", want: 64e6},
		{in: " 32 MiB ", want: 32 << 20},
		{in: "8388608B", want: 8 << 20},
		{in: "off", want: NoMemoryLimit},
		{in: "0", want: NoMemoryLimit},
		{in: "3MiB", wantErr: true},
		{in: "lots", wantErr: true},
		{in: "-1MiB", wantErr: true},
		{in: "MiB", wantErr: true},
		{in: "9999999TiB", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseMemoryLimit(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want && !tt.wantErr {
			t.Errorf("ParseMemoryLimit(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// A bad -memory_limit is a configuration error naming the flag.
func TestRunValidateMemoryLimit(t *testing.T) {
	for _, tt := range []struct {
		limit string
		ok    bool
	}{{"", true}, {"32MiB", true}, {"off", true}, {"2MiB", false}, {"big", false}} {
		r := Run{App: "a", AppPort: 8080, MemoryLimit: tt.limit, Backend: Backend{KafkaBrokers: []string{"k:9092"}, RedisPort: 6379, LeaseTTL: 3e9}}
		err := r.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("-memory_limit %q: Validate() = %v", tt.limit, err)
		}
	}
}
