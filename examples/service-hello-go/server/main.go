// Command server is the greeter service in Go: plain net/http, no kar library.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("POST /helloText", func(w http.ResponseWriter, r *http.Request) {
		name, _ := io.ReadAll(r.Body)
		msg := fmt.Sprintf("Hello %s!", name)
		fmt.Println(msg)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, msg)
	})
	http.HandleFunc("POST /helloJson", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Name string }
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, "want {\"name\": ...}", http.StatusBadRequest)
			return
		}
		msg := fmt.Sprintf("Hello %s!", in.Name)
		fmt.Println(msg)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"greetings": msg})
	})
	port := os.Getenv("KAR_APP_PORT")
	if port == "" {
		port = "8080"
	}
	log.Fatal(http.ListenAndServe("127.0.0.1:"+port, nil))
}
