package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Get returns the request that GETs url with c: nil for a 200, ErrRefused
// for a 503 with Retry-After (an overloaded server's refusal), the status
// otherwise. It reads every answer to the end: a connection whose response
// is left unread is closed, not reused, and each request would pay a new
// connection (and a DNS lookup).
func Get(c *http.Client, url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		rsp, err := c.Do(req)
		if err != nil {
			return errors.Unwrap(err) // the cause, without the URL: fewer error kinds
		}
		_, err = io.Copy(io.Discard, rsp.Body)
		rsp.Body.Close()
		switch {
		case err != nil:
			return err
		case rsp.StatusCode == http.StatusServiceUnavailable && rsp.Header.Get("Retry-After") != "":
			return fmt.Errorf("%w: %s", ErrRefused, rsp.Status)
		case rsp.StatusCode != http.StatusOK:
			return errors.New(rsp.Status)
		}
		return nil
	}
}
