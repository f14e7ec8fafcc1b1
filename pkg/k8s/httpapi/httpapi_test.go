package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRouterAnswersJSON(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /thing", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"ok": "yes"})
	})
	srv := httptest.NewServer(Router(mux))
	defer srv.Close()

	cases := []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/thing", http.StatusOK, ""},
		{"HEAD", "/thing", http.StatusOK, ""},
		{"GET", "/nothing", http.StatusNotFound, ""},
		{"POST", "/thing", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"DELETE", "/thing", http.StatusMethodNotAllowed, "GET, HEAD"},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		rsp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		var body map[string]string
		decodeErr := json.NewDecoder(rsp.Body).Decode(&body)
		rsp.Body.Close()
		if rsp.StatusCode != c.status {
			t.Errorf("%s %s: status %d, want %d", c.method, c.path, rsp.StatusCode, c.status)
		}
		if got := rsp.Header.Get("Content-Type"); got != "application/json" {
			t.Errorf("%s %s: Content-Type %q, want application/json", c.method, c.path, got)
		}
		if c.method != "HEAD" && c.status >= 400 && (decodeErr != nil || body["error"] == "") {
			t.Errorf("%s %s: body %v (%v), want {\"error\": ...}", c.method, c.path, body, decodeErr)
		}
		if got := rsp.Header.Get("Allow"); got != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
		}
	}
}

func TestLimitBody(t *testing.T) {
	srv := httptest.NewServer(LimitBody(10, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			WriteError(w, http.StatusRequestEntityTooLarge, err.Error())
			return
		}
		WriteJSON(w, http.StatusOK, map[string]string{"ok": "yes"})
	})))
	defer srv.Close()
	for _, c := range []struct {
		body   io.Reader
		status int
	}{
		{strings.NewReader("small"), http.StatusOK},
		{strings.NewReader(strings.Repeat("x", 11)), http.StatusRequestEntityTooLarge},
		// No Content-Length: cut off while reading.
		{io.MultiReader(strings.NewReader(strings.Repeat("x", 11))), http.StatusRequestEntityTooLarge},
	} {
		rsp, err := http.Post(srv.URL, "text/plain", c.body)
		if err != nil {
			t.Fatal(err)
		}
		rsp.Body.Close()
		if rsp.StatusCode != c.status {
			t.Errorf("status %d, want %d", rsp.StatusCode, c.status)
		}
	}
}
