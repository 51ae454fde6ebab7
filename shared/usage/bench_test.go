package usage_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/usage"
)

// nopStore accepts everything without work: the benchmarks measure our own code only.
type nopStore struct{ usage.Store }

func (nopStore) Record(_ context.Context, b *usage.Batch) ([]usage.EntryResult, error) {
	out := make([]usage.EntryResult, len(b.Entries))
	for i := range out {
		out[i].Status = usage.Accepted
	}
	return out, nil
}

// benchWorld is 50 tenants with one subscription each, and a batch of 500 records over them.
func benchWorld(b *testing.B) (*usage.Service, []byte) {
	tenants := &fakeTenants{m: map[string]*usage.Tenant{}}
	res := &fakeResolver{}
	for i := range 50 {
		id := fmt.Sprintf("tnt_%02d", i)
		tenants.m[id] = &usage.Tenant{ID: id, Path: "/platform/prt_1/" + id + "/", Currency: "EUR"}
		res.subs = append(res.subs, fakeSub{id: fmt.Sprintf("sub_%02d", i), tenant: id, skus: []string{"storage-gb", "vm-hours"},
			from: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	}
	svc := &usage.Service{Tenants: tenants, Resolver: res, Store: nopStore{}, Log: quiet,
		Catalog: &fakeCatalog{thresholds: map[string][]money.Decimal{"storage-gb": {money.NewFromInt(1000)}}},
		Now:     func() time.Time { return now }}
	var sb strings.Builder
	sb.WriteString(`{"records":[`)
	for i := range 500 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"id":"rec-%08d","tenantId":"tnt_%02d","sku":"storage-gb","quantity":"%d.25","timestamp":"2026-10-%02dT%02d:15:00Z","region":"eu-west-1"}`,
			i, i%50, i%97, 1+i%19, i%24)
	}
	sb.WriteString(`]}`)
	return svc, []byte(sb.String())
}

// BenchmarkIngest measures the CPU of our own code per record on a batch of 500 records over
// 50 subscriptions, with the store faked out: decoding (DecodeMessage, as the queue consumer
// does), validation, tenant and subscription resolution, aggregation. The ns/record metric is
// the figure of docs/performance.md (target: under 5 µs).
func BenchmarkIngest(b *testing.B) {
	svc, body := benchWorld(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		items := usage.DecodeMessage("m", body)
		rep := svc.Ingest(ctx, usage.Options{Source: usage.SourceQueue}, items)
		if rep.Accepted != 500 {
			b.Fatalf("accepted %d", rep.Accepted)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*500), "ns/record")
}

// BenchmarkIngestDecoded is BenchmarkIngest without the JSON decoding (records already decoded,
// as from CSV files).
func BenchmarkIngestDecoded(b *testing.B) {
	svc, body := benchWorld(b)
	ctx := context.Background()
	items := usage.DecodeMessage("m", body)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rep := svc.Ingest(ctx, usage.Options{Source: usage.SourceQueue}, items)
		if rep.Accepted != 500 {
			b.Fatalf("accepted %d", rep.Accepted)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*500), "ns/record")
}
