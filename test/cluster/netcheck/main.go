// Command netcheck runs in the pods with which the cluster tier tests
// NetworkPolicies: asked from the node (which policies never block), it
// tries a path from inside its pod and says whether it opened.
//
//	GET /dial?to=host:port      {"open": true} if a TCP connection opened within a second
//	GET /resolve?name=NAME      {"open": true} if the pod's DNS answered
//	GET /ready                  503: the pods carrying a workload's labels stay out of its Services
package main

import (
	"context"
	"encoding/json"
	"log"
	"net"
	"net/http"
	"time"
)

type answer struct {
	Open  bool   `json:"open"`
	Error string `json:"error,omitempty"`
}

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /dial", func(w http.ResponseWriter, r *http.Request) {
		c, err := net.DialTimeout("tcp", r.URL.Query().Get("to"), time.Second)
		if err == nil {
			c.Close()
		}
		reply(w, err)
	})
	mux.HandleFunc("GET /resolve", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		_, err := net.DefaultResolver.LookupHost(ctx, r.URL.Query().Get("name"))
		reply(w, err)
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	srv := &http.Server{Addr: ":8080", Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

func reply(w http.ResponseWriter, err error) {
	a := answer{Open: err == nil}
	if err != nil {
		a.Error = err.Error()
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(a)
}
