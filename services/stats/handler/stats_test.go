package handler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	merrors "go-micro.dev/v6/errors"
	"google.golang.org/protobuf/proto"

	"github.com/micro/kubernetes/pkg/k8s"
	"github.com/micro/kubernetes/pkg/k8s/natstest"
	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
	statsv1 "github.com/micro/kubernetes/proto/stats/v1"
)

// newCounts is a replica's Counts, on a connection of its own.
func newCounts(t *testing.T, url string) *Counts {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return NewCounts(js)
}

func greeted(t *testing.T, name string) []byte {
	t.Helper()
	data, err := proto.Marshal(&greeterv1.Greeted{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Two replicas get every event of one name, each twice, in opposite
// orders, at once: each is counted once.
func TestCountIsIdempotentUnderRacingReplicas(t *testing.T) {
	url := natstest.Start(t).URL
	const events = 200
	replicas := []*Counts{newCounts(t, url), newCounts(t, url)}
	data := greeted(t, "Barbara")
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(replicas)*events)
	for i, c := range replicas {
		wg.Go(func() {
			for j := range events {
				seq := j
				if i == 1 {
					seq = events - 1 - j
				}
				e := k8s.Event{ID: "event-" + strconv.Itoa(seq), Sequence: uint64(seq + 1), Data: data}
				for range 2 {
					if err := c.Count(t.Context(), e); err != nil {
						errs <- fmt.Errorf("replica %d, event %d: %w", i, seq, err)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n, err := replicas[0].Get(t.Context(), "Barbara"); err != nil || n != events {
		t.Fatalf("count %d, %v; want %d", n, err, events)
	}
}

// The ids of settled events are forgotten, and the record stays small;
// an unsettled one is still recognised.
func TestCountForgetsSettledIDs(t *testing.T) {
	c := newCounts(t, natstest.Start(t).URL)
	data := greeted(t, "Edsger")
	for seq := uint64(1); seq <= 100; seq++ {
		// Every event but the last 5 has been acknowledged by now.
		e := k8s.Event{ID: "e" + strconv.FormatUint(seq, 10), Sequence: seq, Settled: max(seq, 5) - 5, Data: data}
		if err := c.Count(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	kv, err := c.bucket(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(t.Context(), key("Edsger"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(entry.Value()), `"e`); got > 6 {
		t.Fatalf("the record keeps %d ids: %s", got, entry.Value())
	}
	if err := c.Count(t.Context(), k8s.Event{ID: "e100", Sequence: 100, Settled: 96, Data: data}); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Get(t.Context(), "Edsger"); n != 100 {
		t.Fatalf("count %d after a copy of an unsettled event, want 100", n)
	}
}

// A copy of an event delivered with an older Settled than the one its id
// was forgotten with is not counted again: a replica that was still
// handling it while another settled it, or a NATS restart that lost the
// last acknowledgements and delivers them again. (TestEvents counted 13
// events twice this way, 10,013 of 10,000, before the record kept its
// Settled.)
func TestCountIgnoresCopiesOfForgottenEvents(t *testing.T) {
	c := newCounts(t, natstest.Start(t).URL)
	data := greeted(t, "Grace")
	for _, e := range []k8s.Event{
		{ID: "a", Sequence: 5, Settled: 3, Data: data},
		{ID: "b", Sequence: 6, Settled: 5, Data: data}, // forgets "a"
		{ID: "a", Sequence: 5, Settled: 3, Data: data}, // "a" again, as first delivered
		{ID: "a", Sequence: 5, Settled: 0, Data: data}, // after a restart that lost the acks
	} {
		if err := c.Count(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := c.Get(t.Context(), "Grace"); err != nil || n != 2 {
		t.Fatalf("count %d, %v; want 2", n, err)
	}
}

func TestCountRejectsMalformedEvents(t *testing.T) {
	c := newCounts(t, natstest.Start(t).URL)
	for what, data := range map[string][]byte{"not protobuf": []byte("\xff\xff"), "no name": nil} {
		if err := c.Count(t.Context(), k8s.Event{ID: "x", Sequence: 1, Data: data}); !errors.Is(err, k8s.ErrRejectEvent) {
			t.Errorf("%s: %v, want k8s.ErrRejectEvent", what, err)
		}
	}
}

func TestGetRefusesBadNames(t *testing.T) {
	s := Stats{Counts: newCounts(t, natstest.Start(t).URL)}
	for _, name := range []string{"", strings.Repeat("a", maxNameBytes+1)} {
		err := s.Get(context.Background(), &statsv1.GetRequest{Name: name}, new(statsv1.GetResponse))
		if merr := merrors.FromError(err); merr == nil || merr.Code != http.StatusBadRequest {
			t.Errorf("Get(%d bytes) = %v, want a 400 (InvalidArgument)", len(name), err)
		}
	}
	rsp := new(statsv1.GetResponse)
	if err := s.Get(context.Background(), &statsv1.GetRequest{Name: "nobody"}, rsp); err != nil || rsp.Count != 0 {
		t.Fatalf("a name never greeted: %v, %v; want 0", rsp, err)
	}
}
