// Command client calls Counter actors through its sidecar's REST API
// (POST /kar/v1/actor/Counter/{id}/call/{method}), checks every answer, and
// prints SUCCESS or FAILURE (exit code 0 or 1).
//
//	kar run -app counter ./counter-client [-id c1] [-n 10]
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

// result is an actor method's answer as the sidecar relays it.
type result struct {
	Value   json.RawMessage `json:"value"`
	Error   bool            `json:"error"`
	Message string          `json:"message"`
	Stack   string          `json:"stack"`
}

type client struct {
	base string
	http *http.Client
}

// call invokes method on Counter id with args. noValue is true for a 204.
func (c client) call(id, method string, args ...any) (res result, noValue bool, err error) {
	if args == nil {
		args = []any{}
	}
	body, _ := json.Marshal(args)
	url := fmt.Sprintf("%s/actor/Counter/%s/call/%s", c.base, id, method)
	resp, err := c.http.Post(url, "application/kar+json", bytes.NewReader(body))
	if err != nil {
		return res, false, fmt.Errorf("calling %s on Counter %s: %w", method, id, err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	switch {
	case resp.StatusCode == http.StatusNoContent:
		return res, true, nil
	case resp.StatusCode != http.StatusOK:
		return res, false, fmt.Errorf("calling %s on Counter %s: %s: %s", method, id, resp.Status, text)
	}
	if err := json.Unmarshal(text, &res); err != nil {
		return res, false, fmt.Errorf("calling %s on Counter %s: answer is not an actor result: %q", method, id, text)
	}
	return res, false, nil
}

// number calls method and wants an integer value.
func (c client) number(id, method string, args ...any) (int, error) {
	res, noValue, err := c.call(id, method, args...)
	if err != nil {
		return 0, err
	}
	if noValue || res.Error {
		return 0, fmt.Errorf("%s on Counter %s: want a value, got no value=%v error=%v %s", method, id, noValue, res.Error, res.Message)
	}
	n, err := strconv.Atoi(string(res.Value))
	if err != nil {
		return 0, fmt.Errorf("%s on Counter %s: want an integer, got %s", method, id, res.Value)
	}
	return n, nil
}

func run(c client, id string, n int) error {
	start, err := c.number(id, "get")
	if err != nil {
		return err
	}
	fmt.Printf("Counter %s starts at %d\n", id, start)
	for i := 1; i <= n; i++ {
		got, err := c.number(id, "incr")
		if err != nil {
			return err
		}
		if got != start+i {
			return fmt.Errorf("incr #%d answered %d, want %d", i, got, start+i)
		}
	}
	got, err := c.number(id, "incr", 5)
	if err != nil {
		return err
	}
	if want := start + n + 5; got != want {
		return fmt.Errorf("incr 5 answered %d, want %d", got, want)
	}
	fmt.Printf("Counter %s is at %d\n", id, got)

	if _, noValue, err := c.call(id, "reset"); err != nil || !noValue {
		return fmt.Errorf("reset: want no value (204), got noValue=%v, err=%v", noValue, err)
	}
	if got, err := c.number(id, "get"); err != nil || got != 0 {
		return fmt.Errorf("get after reset: %d, %v; want 0", got, err)
	}

	res, _, err := c.call(id, "fail")
	if err != nil {
		return err
	}
	if !res.Error || res.Message != "Counter.fail: failing as asked" {
		return fmt.Errorf("fail: want an actor error, got %+v", res)
	}
	fmt.Printf("fail answered the error %q\n", res.Message)
	return nil
}

func main() {
	id := flag.String("id", "c-"+strconv.Itoa(os.Getpid()), "the Counter instance to use")
	n := flag.Int("n", 10, "how many times to increment")
	flag.Parse()
	port := os.Getenv("KAR_RUNTIME_PORT")
	if port == "" {
		fmt.Fprintln(os.Stderr, "KAR_RUNTIME_PORT must be set: start me with kar run")
		os.Exit(1)
	}
	c := client{base: "http://127.0.0.1:" + port + "/kar/v1", http: &http.Client{Timeout: 60 * time.Second}}
	if err := run(c, *id, *n); err != nil {
		fmt.Println("FAILURE:", err)
		os.Exit(1)
	}
	fmt.Println("SUCCESS")
}
