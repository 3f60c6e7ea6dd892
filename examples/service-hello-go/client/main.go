// Command client calls the greeter through its sidecar's REST API.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

func main() {
	base := "http://127.0.0.1:" + os.Getenv("KAR_RUNTIME_PORT") + "/kar/v1/service/greeter/call"

	resp, err := http.Post(base+"/helloText", "text/plain", strings.NewReader("John Doe"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(text))

	resp, err = http.Post(base+"/helloJson", "application/json", strings.NewReader(`{"name": "John Doe"}`))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var out struct{ Greetings string }
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	fmt.Println(out.Greetings)
}
