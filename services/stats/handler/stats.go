// Package handler counts the greetings and answers Stats.Get.
package handler

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
	merrors "go-micro.dev/v6/errors"
	"google.golang.org/protobuf/proto"

	"github.com/micro/kubernetes/pkg/k8s"
	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
	statsv1 "github.com/micro/kubernetes/proto/stats/v1"
)

const (
	// Bucket is the JetStream key-value bucket of the counts, one key per
	// name; it lives in NATS, so the counts outlive the service's pods.
	Bucket = "stats"
	// maxNameBytes bounds a name asked of Get: no name the greeter greets
	// is longer (100 characters of at most 4 bytes).
	maxNameBytes = 400
)

// A record is a name's value in the bucket.
type record struct {
	Count uint64 `json:"count"`
	// Applied are the ids of the events counted above Settled, each with
	// its stream sequence: a copy of one is not counted twice.
	Applied map[string]uint64 `json:"applied,omitempty"`
	// Settled is the highest k8s.Event.Settled the record was pruned with:
	// every event up to it was handled, so its ids are forgotten and a
	// copy of one delivered again is not counted. A delivery can carry an
	// older Settled than the record's (a replica's stale view, or an
	// unclean NATS restart that lost acknowledgements): without this, such
	// a copy would find its id forgotten and count twice.
	Settled uint64 `json:"settled,omitempty"`
}

// Counts keeps a count of greetings per name in Bucket. Count may run in
// any number of replicas at once: each change is a compare-and-set on the
// name's revision, tried again when another replica changed it first.
type Counts struct {
	js jetstream.JetStream
	mu sync.Mutex
	kv jetstream.KeyValue
}

// NewCounts keeps the counts in js's Bucket, made on first use.
func NewCounts(js jetstream.JetStream) *Counts { return &Counts{js: js} }

func (c *Counts) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kv != nil {
		return c.kv, nil
	}
	kv, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: Bucket, Description: "Greetings per name (services/stats)", History: 1, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("setting up the bucket %q: %w", Bucket, err)
	}
	c.kv = kv
	return kv, nil
}

// key is a name's key: any name, in the characters keys allow.
func key(name string) string { return base64.RawURLEncoding.EncodeToString([]byte(name)) }

// Count counts one greeting event (greeter.v1.Greeted), once however often
// it is delivered. A malformed event is rejected: it can never count.
func (c *Counts) Count(ctx context.Context, e k8s.Event) error {
	var g greeterv1.Greeted
	if err := proto.Unmarshal(e.Data, &g); err != nil {
		return fmt.Errorf("%w: not a Greeted event: %v", k8s.ErrRejectEvent, err)
	}
	if g.GetName() == "" {
		return fmt.Errorf("%w: a Greeted event without a name", k8s.ErrRejectEvent)
	}
	kv, err := c.bucket(ctx)
	if err != nil {
		return err
	}
	k := key(g.GetName())
	for {
		var rec record
		var revision uint64
		entry, err := kv.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("reading the count: %w", err)
		default:
			if err := json.Unmarshal(entry.Value(), &rec); err != nil {
				return fmt.Errorf("reading the count of key %s: %w", k, err)
			}
			revision = entry.Revision()
		}
		if _, counted := rec.Applied[e.ID]; counted || e.Sequence <= rec.Settled {
			return nil
		}
		if rec.Applied == nil {
			rec.Applied = map[string]uint64{}
		}
		rec.Settled = max(rec.Settled, e.Settled)
		maps.DeleteFunc(rec.Applied, func(_ string, seq uint64) bool { return seq <= rec.Settled })
		rec.Count++
		rec.Applied[e.ID] = e.Sequence
		data, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if revision == 0 {
			_, err = kv.Create(ctx, k, data)
		} else {
			_, err = kv.Update(ctx, k, data, revision)
		}
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue // another replica changed it first: read it again
		}
		if err != nil {
			return fmt.Errorf("writing the count: %w", err)
		}
		return nil
	}
}

// Get is a name's count so far.
func (c *Counts) Get(ctx context.Context, name string) (uint64, error) {
	// NATS away: say so now, rather than when the caller's deadline ends.
	if !c.js.Conn().IsConnected() {
		return 0, errors.New("NATS is not connected")
	}
	kv, err := c.bucket(ctx)
	if err != nil {
		return 0, err
	}
	entry, err := kv.Get(ctx, key(name))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("reading the count: %w", err)
	}
	var rec record
	if err := json.Unmarshal(entry.Value(), &rec); err != nil {
		return 0, fmt.Errorf("reading the count: %w", err)
	}
	return rec.Count, nil
}

// Stats answers Stats.Get from Counts.
type Stats struct {
	Counts *Counts
}

var _ statsv1.StatsHandler = Stats{}

// Get answers a name's count, InvalidArgument for an empty or overlong
// name, or Unavailable while the counts cannot be read (NATS away).
func (s Stats) Get(ctx context.Context, req *statsv1.GetRequest, rsp *statsv1.GetResponse) error {
	switch name := req.GetName(); {
	case name == "":
		return merrors.BadRequest(statsv1.ServiceName, "name must not be empty")
	case len(name) > maxNameBytes:
		return merrors.BadRequest(statsv1.ServiceName, "name must be at most %d bytes, got %d", maxNameBytes, len(name))
	}
	count, err := s.Counts.Get(ctx, req.GetName())
	if err != nil {
		return merrors.New(statsv1.ServiceName, err.Error(), 503)
	}
	rsp.Name, rsp.Count = req.GetName(), count
	return nil
}
