package tablestore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/guregu/dynamo/v2"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/usage"
)

// The usage items (docs/data-model.md, "Usage: counted exactly once"):
//
//	UREC#<tenant>#<record id> / UREC        claim of one record: the chunk that counts it
//	UAGG#<sub>#<sku>#<period> / L#<seq>     log of one aggregate: entry n commits (or aborts) one
//	                                        chunk; each entry carries the running total
//	UREG#<period> / <tenant path><sub>#<sku> the aggregates with usage in a period (listing)
//	ULATE#<tenant> / <period>#<sub>#<sku>    aggregates changed in a period that is (or may be)
//	                                        invoiced: billing's to-do list
//
// A batch takes a fresh chunk id C. Each record is claimed with a conditional put of its UREC
// item naming C (1 write unit: the floor of per-record exactly-once). Then, per aggregate, one
// conditional put appends entry head+1 to the aggregate's log: "C committed, +delta, total T"
// (1 write unit per aggregate per batch). A record counts iff the chunk its claim names was
// committed in that claim's aggregate log. Nothing else is written on the happy path.
//
// A redelivered record finds its claim: the log (scanned from the head the claim recorded)
// says whether its chunk was committed (a duplicate), aborted (the record is claimed again), or
// neither: the writer crashed between the claim and the commit, or is still working. After the
// grace period such a chunk is aborted by appending "C aborted" to the log; because the log is
// a sequence of conditional puts, the original writer's commit and the abort cannot both land:
// whichever takes the next sequence number first wins, and the loser reads it. No clock decides
// correctness, only when to stop waiting.
const (
	recSK      = "UREC"
	recKind    = "usagerec"
	logKind    = "usagelog"
	regKind    = "usagereg"
	flagKind   = "usagelate"
	opCommit   = "commit"
	opAbort    = "abort"
	seqDigits  = 12
	markerKeep = 400 * 24 * time.Hour // claims expire this long after their period's end (or their making)
)

// DefaultUsageGrace is how long a claimed but unfinished chunk is left to its writer before it
// is aborted. A chunk lives for one round of one Record call (one batch: its claims and one log
// put per aggregate, normally done within seconds), so the grace is far longer than a live
// writer needs, even in the file function, which runs for up to 15 minutes but batch after batch,
// each with its own chunk. Correctness does not depend on it: the writer's commit and an abort
// race for the same log position and only one lands (scan), and a writer whose chunk was
// aborted claims its records again; the grace only spares live writers that extra round.
const DefaultUsageGrace = 2 * time.Minute

func recPK(tenant, id string) string { return "UREC#" + tenant + "#" + id }
func aggPK(key string) string        { return "UAGG#" + key }
func logSK(seq int64) string         { return "L#" + fmt.Sprintf("%0*d", seqDigits, seq) }
func regPK(p period.Period) string   { return "UREG#" + p.String() }
func flagPK(tenant string) string    { return "ULATE#" + tenant }

// flagSK orders a tenant's flags by period.
func flagSK(k usage.AggregateKey) string {
	return k.Period.String() + "#" + k.SubscriptionID + "#" + k.SKU
}

// usageRecItem claims one record for a chunk of one aggregate.
type usageRecItem struct {
	PK, SK string
	Kind   string
	Agg    string // the aggregate's key (usage.AggregateKey.String)
	Chunk  string
	N0     int64 // the aggregate's log head when the claim was made: the chunk's entry lies after
	At     int64 // when the claim was made, Unix milliseconds
	Src    string
	Qty    string
	Ts     string
	Region string `dynamo:",omitempty"`
	Props  string `dynamo:",omitempty"`
	TTL    int64  `dynamo:",omitempty"`
}

// usageLogItem is one entry of an aggregate's log.
type usageLogItem struct {
	PK, SK string
	Kind   string
	Op     string
	Chunk  string
	Delta  string
	Total  string
	N      int
	Late   bool `dynamo:",omitempty"`
	At     int64
}

func (it usageLogItem) seq() int64 {
	n, _ := strconv.ParseInt(strings.TrimPrefix(it.SK, "L#"), 10, 64)
	return n
}

// usageRegItem records that an aggregate has usage in a period.
type usageRegItem struct {
	PK, SK     string
	Kind       string
	TenantID   string
	TenantPath string
	Sub        string
	SKU        string
	Period     string
}

// usageFlagItem is a billing flag (usage.Change). Pending holds "<chunk>@<head>@<unix ms>" for
// each increment started and not known to be finished.
type usageFlagItem struct {
	PK, SK     string
	Kind       string
	TenantID   string
	TenantPath string
	Sub        string
	SKU        string
	Period     string
	Pending    []string `dynamo:",set,omitempty"`
	Late       bool
	Version    int64
	UpdatedAt  time.Time
}

// UsageCapacity is the DynamoDB capacity the usage path consumed since the Usage store was
// made: what DynamoDB reported (ReturnConsumedCapacity) where it reports it, and by DynamoDB's
// rules where it does not: a failed conditional write costs the write units of the item it
// tried to write (1 KB rule), and a transaction costs two units per KB of each item (DynamoDB
// Local reports one).
type UsageCapacity struct {
	WriteUnits float64
	ReadUnits  float64
	// Writes counts write requests; FailedConditions those refused by their condition.
	Writes           int64
	FailedConditions int64
	Transactions     int64
	Reads            int64
}

// Usage is the DynamoDB usage.Store (the protocol above). Make it with NewUsage.
type Usage struct {
	db    *dynamo.DB
	table dynamo.Table
	// Grace is how long a chunk may stay unfinished before another delivery aborts it.
	Grace time.Duration
	// Concurrency bounds the requests one Record call has in flight.
	Concurrency int
	now         func() time.Time

	mu  sync.Mutex
	cap UsageCapacity
}

// NewUsage returns the usage store on s's table with the default grace and concurrency.
func NewUsage(s *Store) *Usage {
	return &Usage{db: s.db, table: s.table, Grace: DefaultUsageGrace, Concurrency: 32, now: time.Now}
}

// Capacity returns the capacity consumed so far.
func (u *Usage) Capacity() UsageCapacity {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.cap
}

// ResetCapacity sets the counters to zero.
func (u *Usage) ResetCapacity() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.cap = UsageCapacity{}
}

// write accounts one write request: the reported units, or units by the 1 KB rule when the
// response reported none or the condition failed.
func (u *Usage) write(cc *dynamo.ConsumedCapacity, item any, err error) {
	units := cc.Total
	failed := dynamo.IsCondCheckFailed(err)
	if units == 0 && (err == nil || failed) {
		units = writeUnits(item)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.cap.Writes++
	if failed {
		u.cap.FailedConditions++
	}
	u.cap.WriteUnits += units
}

// tx accounts a transaction by the rule: 2 units per KB of each item.
func (u *Usage) tx(items ...any) {
	var units float64
	for _, it := range items {
		units += 2 * writeUnits(it)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.cap.Transactions++
	u.cap.Writes++
	u.cap.WriteUnits += units
}

func (u *Usage) read(cc *dynamo.ConsumedCapacity) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.cap.Reads++
	u.cap.ReadUnits += cc.Total
}

// writeUnits returns the write units of an item by DynamoDB's rule: its size (attribute names
// plus values) rounded up to the next KB, at least 1.
func writeUnits(item any) float64 {
	av, err := dynamo.MarshalItem(item)
	if err != nil {
		return 1
	}
	size := 0
	for name, v := range av {
		size += len(name) + avSize(v)
	}
	return math.Max(1, math.Ceil(float64(size)/1024))
}

func avSize(v types.AttributeValue) int {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return len(v.Value)
	case *types.AttributeValueMemberN:
		return len(v.Value)/2 + 1
	case *types.AttributeValueMemberB:
		return len(v.Value)
	case *types.AttributeValueMemberBOOL, *types.AttributeValueMemberNULL:
		return 1
	case *types.AttributeValueMemberSS:
		n := 0
		for _, s := range v.Value {
			n += len(s)
		}
		return n
	case *types.AttributeValueMemberL:
		n := 3
		for _, e := range v.Value {
			n += 1 + avSize(e)
		}
		return n
	case *types.AttributeValueMemberM:
		n := 3
		for k, e := range v.Value {
			n += 1 + len(k) + avSize(e)
		}
		return n
	}
	return 8
}

// parallel runs fn(0..n-1) with at most limit at once.
func parallel(n, limit int, fn func(i int)) {
	if limit < 1 {
		limit = 1
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}

// chunk states as the log tells them.
type chunkState uint8

const (
	chunkUnknown chunkState = iota // neither committed nor aborted (yet)
	chunkCommitted
	chunkAborted
)

// head is an aggregate log's last entry (op "" when the log is empty).
type head struct {
	seq   int64
	op    string
	total money.Decimal
}

func logTotal(it usageLogItem) (money.Decimal, error) {
	d, err := money.Parse(it.Total)
	if err != nil {
		return money.Decimal{}, fmt.Errorf("usage log %s %s total: %w", it.PK, it.SK, err)
	}
	return d, nil
}

func headOf(it usageLogItem) (head, error) {
	t, err := logTotal(it)
	return head{seq: it.seq(), op: it.Op, total: t}, err
}

// readHead returns the last entry of an aggregate log (seq 0 and total 0 when it is empty).
func (u *Usage) readHead(ctx context.Context, aggKey string) (head, error) {
	var it usageLogItem
	var cc dynamo.ConsumedCapacity
	err := u.table.Get("PK", aggPK(aggKey)).Range("SK", dynamo.BeginsWith, "L#").Order(dynamo.Descending).
		Limit(1).Consistent(true).ConsumedCapacity(&cc).One(ctx, &it)
	u.read(&cc)
	if errors.Is(err, dynamo.ErrNotFound) {
		return head{}, nil
	}
	if err != nil {
		return head{}, err
	}
	return headOf(it)
}

// scanPage is how many log entries a scan reads per request: a chunk's entry is almost always
// within a few entries of the head its claim recorded, and a small page keeps the read cheap
// on a long log.
const scanPage = 32

// scan reads an aggregate log from entry from (ascending), a page at a time, and returns what it
// says of chunk and, when the chunk's entry is not found, the head: the last entry the reads saw.
//
// Every entry up to that head has been read, and none names chunk. Callers append at head+1
// under attribute_not_exists, so such an append lands only if nothing was appended after the
// head meanwhile: an abort can never follow a commit of the same chunk, nor a commit an abort.
// This is why entry from itself is read in the first page (for its total) rather than by a
// second request for the head: a head read separately may be an entry appended between the two
// requests, one nobody checked, possibly the chunk's own commit.
func (u *Usage) scan(ctx context.Context, aggKey, chunk string, from int64) (chunkState, head, error) {
	last := head{seq: from}
	op, after := dynamo.Greater, from
	if from > 0 {
		op = dynamo.GreaterOrEqual
	}
	sawFrom := from == 0
	for {
		var items []usageLogItem
		var cc dynamo.ConsumedCapacity
		err := u.table.Get("PK", aggPK(aggKey)).Range("SK", op, logSK(after)).Consistent(true).
			SearchLimit(scanPage).ConsumedCapacity(&cc).All(ctx, &items)
		u.read(&cc)
		if err != nil {
			return chunkUnknown, last, err
		}
		for _, it := range items {
			if it.Chunk == chunk {
				if it.Op == opCommit {
					return chunkCommitted, last, nil
				}
				return chunkAborted, last, nil
			}
			h, err := headOf(it)
			if err != nil {
				return chunkUnknown, last, err
			}
			sawFrom = sawFrom || h.seq == from
			last = h
		}
		if len(items) < scanPage {
			break
		}
		op, after = dynamo.Greater, last.seq
	}
	if !sawFrom {
		// Entries are never deleted and from was read as a head: the table is not what we wrote.
		return chunkUnknown, last, fmt.Errorf("usage log %s: entry %d is missing", aggKey, from)
	}
	return chunkUnknown, last, nil
}

// appendLog puts entry head.seq+1 unless that sequence number is taken.
func (u *Usage) appendLog(ctx context.Context, it usageLogItem) error {
	var cc dynamo.ConsumedCapacity
	err := u.table.Put(it).If("attribute_not_exists(PK)").ConsumedCapacity(&cc).Run(ctx)
	u.write(&cc, it, err)
	return err
}

// aggKeyParts splits "<sub>#<sku>#<YYYY-MM>".
func aggKeyParts(s string) (usage.AggregateKey, bool) {
	parts := strings.Split(s, "#")
	if len(parts) != 3 {
		return usage.AggregateKey{}, false
	}
	p, err := period.Parse(parts[2])
	if err != nil {
		return usage.AggregateKey{}, false
	}
	return usage.AggregateKey{SubscriptionID: parts[0], SKU: parts[1], Period: p}, true
}

func pendingTag(chunk string, n0 int64, at time.Time) string {
	return chunk + "@" + strconv.FormatInt(n0, 10) + "@" + strconv.FormatInt(at.UnixMilli(), 10)
}

// pendingParts splits a Pending tag.
func pendingParts(tag string) (chunk string, n0 int64, at time.Time, ok bool) {
	parts := strings.Split(tag, "@")
	if len(parts) != 3 {
		return "", 0, time.Time{}, false
	}
	n, err1 := strconv.ParseInt(parts[1], 10, 64)
	ms, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil {
		return "", 0, time.Time{}, false
	}
	return parts[0], n, time.UnixMilli(ms).UTC(), true
}

// clearPending removes a finished increment from a flag, if the flag exists.
func (u *Usage) clearPending(ctx context.Context, tenant string, key usage.AggregateKey, tag string) error {
	var cc dynamo.ConsumedCapacity
	up := u.table.Update("PK", flagPK(tenant)).Range("SK", flagSK(key)).DeleteStringsFromSet("Pending", tag).
		Add("Version", 1).If("attribute_exists(PK)").ConsumedCapacity(&cc)
	err := up.Run(ctx)
	u.write(&cc, usageFlagItem{PK: flagPK(tenant), SK: flagSK(key), Pending: []string{tag}}, err)
	if dynamo.IsCondCheckFailed(err) {
		return nil
	}
	return err
}

// abort appends "chunk aborted" to the aggregate's log unless the log already says what became
// of the chunk, and returns the chunk's final state. tenant and tag, when set, name the billing
// flag that lists the chunk as pending.
func (u *Usage) abort(ctx context.Context, aggKey, chunk string, from int64, tenant, tag string) (chunkState, error) {
	for range 20 {
		st, h, err := u.scan(ctx, aggKey, chunk, from)
		if err != nil || st != chunkUnknown {
			return st, err
		}
		it := usageLogItem{PK: aggPK(aggKey), SK: logSK(h.seq + 1), Kind: logKind, Op: opAbort, Chunk: chunk,
			Delta: "0", Total: h.total.String(), At: u.now().UnixMilli()}
		err = u.appendLog(ctx, it)
		if dynamo.IsCondCheckFailed(err) {
			from = h.seq
			continue
		}
		if err != nil {
			return chunkUnknown, err
		}
		if tenant != "" {
			if key, ok := aggKeyParts(aggKey); ok {
				if err := u.clearPending(ctx, tenant, key, tag); err != nil {
					return chunkAborted, err
				}
			}
		}
		return chunkAborted, nil
	}
	return chunkUnknown, errors.New("usage log: too much contention to abort a chunk")
}

// statusCell memoises, within one Record call, what became of a chunk seen in claims.
type statusCell struct {
	mu    sync.Mutex
	done  bool
	state chunkState
	err   error
}

// run is the state of one Record call.
type run struct {
	u     *Usage
	b     *usage.Batch
	chunk string
	now   time.Time
	aggs  []*aggRun

	mu     sync.Mutex
	status map[string]*statusCell
}

type aggRun struct {
	a       usage.Aggregate
	key     string
	h       head
	err     error
	claimed []int
	used    bool
}

// claimResult is what the claim of one record came to.
type claimResult struct {
	status usage.Status // Accepted (claimed for this run's chunk), Duplicate or Retry
	err    error
}

// Record implements usage.Store with the protocol described at the top of this file.
func (u *Usage) Record(ctx context.Context, b *usage.Batch) ([]usage.EntryResult, error) {
	res := make([]usage.EntryResult, len(b.Entries))
	// Repeats within the batch follow their first occurrence.
	first := make([]int, len(b.Entries))
	seen := map[string]int{}
	pending := make([]int, 0, len(b.Entries))
	for i, e := range b.Entries {
		k := e.TenantID + "\x00" + e.ID
		if j, ok := seen[k]; ok {
			first[i] = j
			continue
		}
		seen[k], first[i] = i, i
		pending = append(pending, i)
	}
	redelivery := b.Redelivery
	for round := 0; len(pending) > 0; round++ {
		if round == 3 {
			for _, i := range pending {
				res[i] = usage.EntryResult{Status: usage.Retry, Err: errors.New("usage: the chunk was aborted three times")}
			}
			break
		}
		retryAgain := u.round(ctx, b, pending, redelivery, res)
		pending, redelivery = retryAgain, true
	}
	for i := range b.Entries {
		if j := first[i]; j != i {
			switch res[j].Status {
			case usage.Accepted, usage.Duplicate:
				res[i] = usage.EntryResult{Status: usage.Duplicate}
			default:
				res[i] = res[j]
			}
		}
	}
	return res, nil
}

// round claims the entries for a fresh chunk and commits it in every aggregate. It fills res
// and returns the entries whose chunk was aborted meanwhile, to be claimed again.
func (u *Usage) round(ctx context.Context, b *usage.Batch, entries []int, redelivery bool, res []usage.EntryResult) []int {
	r := &run{u: u, b: b, chunk: ids.New("chk"), now: u.now().UTC(), status: map[string]*statusCell{}}
	r.aggs = make([]*aggRun, len(b.Aggregates))
	for i, a := range b.Aggregates {
		r.aggs[i] = &aggRun{a: a, key: a.Key.String()}
	}
	var used []*aggRun
	for _, i := range entries {
		ag := r.aggs[b.Entries[i].Aggregate]
		if !ag.used {
			ag.used = true
			used = append(used, ag)
		}
	}
	// 1. The heads the claims record.
	parallel(len(used), u.Concurrency, func(k int) { used[k].h, used[k].err = u.readHead(ctx, used[k].key) })
	// 2. Claims (with a read first when the batch was probably seen before).
	known := map[int]*usageRecItem{}
	if redelivery {
		known = u.readClaims(ctx, b, entries)
	}
	claims := make([]claimResult, len(entries))
	parallel(len(entries), u.Concurrency, func(j int) {
		i := entries[j]
		ag := r.aggs[b.Entries[i].Aggregate]
		if ag.err != nil {
			claims[j] = claimResult{status: usage.Retry, err: ag.err}
			return
		}
		claims[j] = r.claim(ctx, i, known[i])
	})
	for j, i := range entries {
		c := claims[j]
		switch c.status {
		case usage.Accepted:
			ag := r.aggs[b.Entries[i].Aggregate]
			ag.claimed = append(ag.claimed, i)
		default:
			res[i] = usage.EntryResult{Status: c.status, Err: c.err}
		}
	}
	// 3. One commit per aggregate.
	var again []int
	var mu sync.Mutex
	parallel(len(used), u.Concurrency, func(k int) {
		ag := used[k]
		if len(ag.claimed) == 0 {
			return
		}
		st, err := r.commit(ctx, ag)
		mu.Lock()
		defer mu.Unlock()
		for _, i := range ag.claimed {
			switch {
			case err != nil:
				res[i] = usage.EntryResult{Status: usage.Retry, Err: err}
			case st == chunkCommitted:
				res[i] = usage.EntryResult{Status: usage.Accepted}
			default: // aborted by a concurrent recovery: claim again with a new chunk
				again = append(again, i)
			}
		}
	})
	return again
}

// readClaims reads the existing claims of entries (eventually consistent: a claim missed here
// is met by the conditional put).
func (u *Usage) readClaims(ctx context.Context, b *usage.Batch, entries []int) map[int]*usageRecItem {
	out := map[int]*usageRecItem{}
	byPK := map[string][]int{}
	var keys []dynamo.Keyed
	for _, i := range entries {
		pk := recPK(b.Entries[i].TenantID, b.Entries[i].ID)
		if _, ok := byPK[pk]; !ok {
			keys = append(keys, dynamo.Keys{pk, recSK})
		}
		byPK[pk] = append(byPK[pk], i)
	}
	var mu sync.Mutex
	const perCall = 100
	parallel((len(keys)+perCall-1)/perCall, u.Concurrency, func(k int) {
		part := keys[k*perCall : min(len(keys), (k+1)*perCall)]
		var items []usageRecItem
		var cc dynamo.ConsumedCapacity
		err := u.table.Batch("PK", "SK").Get(part...).ConsumedCapacity(&cc).All(ctx, &items)
		u.read(&cc)
		if err != nil && !errors.Is(err, dynamo.ErrNotFound) {
			return // fall back to conditional puts
		}
		mu.Lock()
		defer mu.Unlock()
		for _, it := range items {
			for _, i := range byPK[it.PK] {
				cp := it
				out[i] = &cp
			}
		}
	})
	return out
}

func (r *run) recItem(i int) usageRecItem {
	e := r.b.Entries[i]
	ag := r.aggs[e.Aggregate]
	it := usageRecItem{PK: recPK(e.TenantID, e.ID), SK: recSK, Kind: recKind, Agg: ag.key, Chunk: r.chunk, N0: ag.h.seq,
		At: r.now.UnixMilli(), Src: string(e.Source), Qty: e.Quantity.String(), Ts: e.Timestamp.UTC().Format(time.RFC3339Nano),
		Region: e.Region, Props: string(e.Properties), TTL: claimTTL(ag.a.Key.Period, r.now)}
	if it.Src == "" {
		it.Src = string(r.b.Source)
	}
	return it
}

// claimTTL is when a claim made now for a record of period p expires: markerKeep after the
// period's end, or after now for a record of a period that ended long ago (timestamps back to
// 2000 are accepted), so that no claim is ever born expired and a replay never counts it again.
func claimTTL(p period.Period, now time.Time) int64 {
	from := p.End()
	if now.After(from) {
		from = now
	}
	return from.Add(markerKeep).Unix()
}

// claim makes entry i's record count for this run's chunk, or finds it counted already.
func (r *run) claim(ctx context.Context, i int, known *usageRecItem) claimResult {
	u := r.u
	it := r.recItem(i)
	var cur usageRecItem
	if known != nil {
		cur = *known
	} else {
		var cc dynamo.ConsumedCapacity
		wrote, err := u.table.Put(it).If("attribute_not_exists(PK)").ConsumedCapacity(&cc).CurrentValue(ctx, &cur)
		u.write(&cc, it, condErr(wrote, err))
		if err != nil {
			return claimResult{status: usage.Retry, err: err}
		}
		if wrote {
			return claimResult{status: usage.Accepted}
		}
	}
	for range 4 {
		if cur.Chunk == r.chunk {
			return claimResult{status: usage.Accepted} // our own earlier attempt
		}
		st, err := r.chunkStatus(ctx, &cur)
		if err != nil {
			return claimResult{status: usage.Retry, err: err}
		}
		switch st {
		case chunkCommitted:
			return claimResult{status: usage.Duplicate}
		case chunkUnknown:
			return claimResult{status: usage.Retry, err: usage.ErrInProgress}
		}
		// Aborted: nothing counts the record; take the claim over for this chunk.
		var cc dynamo.ConsumedCapacity
		up := u.table.Update("PK", it.PK).Range("SK", recSK).
			Set("Agg", it.Agg).Set("Chunk", it.Chunk).Set("N0", it.N0).Set("At", it.At).Set("Src", it.Src).
			Set("Qty", it.Qty).Set("Ts", it.Ts).Set("TTL", it.TTL)
		setOrRemove(up, "Region", it.Region)
		setOrRemove(up, "Props", it.Props)
		err = up.If("'Chunk' = ?", cur.Chunk).ConsumedCapacity(&cc).Run(ctx)
		u.write(&cc, it, err)
		if err == nil {
			return claimResult{status: usage.Accepted}
		}
		if !dynamo.IsCondCheckFailed(err) {
			return claimResult{status: usage.Retry, err: err}
		}
		// Someone else took it over first: read who.
		var rc dynamo.ConsumedCapacity
		err = u.table.Get("PK", it.PK).Range("SK", dynamo.Equal, recSK).Consistent(true).ConsumedCapacity(&rc).One(ctx, &cur)
		u.read(&rc)
		if err != nil {
			return claimResult{status: usage.Retry, err: err}
		}
	}
	return claimResult{status: usage.Retry, err: usage.ErrInProgress}
}

// condErr turns CurrentValue's "not written, no error" into the condition failure it was, for
// the capacity accounting.
func condErr(wrote bool, err error) error {
	if err == nil && !wrote {
		return &types.ConditionalCheckFailedException{}
	}
	return err
}

// chunkStatus says what became of the chunk a claim names, aborting it when it has been left
// unfinished longer than the grace period. It is computed once per chunk per run.
func (r *run) chunkStatus(ctx context.Context, claim *usageRecItem) (chunkState, error) {
	key := claim.Agg + "\x00" + claim.Chunk
	r.mu.Lock()
	cell := r.status[key]
	if cell == nil {
		cell = &statusCell{}
		r.status[key] = cell
	}
	r.mu.Unlock()
	cell.mu.Lock()
	defer cell.mu.Unlock()
	if cell.done {
		return cell.state, cell.err
	}
	st, _, err := r.u.scan(ctx, claim.Agg, claim.Chunk, claim.N0)
	if err == nil && st == chunkUnknown && r.now.Sub(time.UnixMilli(claim.At)) >= r.u.Grace {
		tenant := strings.TrimPrefix(claim.PK, "UREC#")
		tenant, _, _ = strings.Cut(tenant, "#")
		st, err = r.u.abort(ctx, claim.Agg, claim.Chunk, claim.N0, tenant, pendingTag(claim.Chunk, claim.N0, time.UnixMilli(claim.At)))
	}
	if err != nil || st != chunkUnknown {
		cell.done, cell.state, cell.err = true, st, err
	}
	return st, err
}

// commit appends this run's chunk to an aggregate's log, with the threshold events it crosses,
// and returns whether it was committed or aborted by a concurrent recovery.
func (r *run) commit(ctx context.Context, ag *aggRun) (chunkState, error) {
	u := r.u
	var delta money.Decimal
	for _, i := range ag.claimed {
		delta = delta.Add(r.b.Entries[i].Quantity)
	}
	tag := pendingTag(r.chunk, ag.h.seq, r.now)
	if ag.a.Closing {
		if err := r.flag(ctx, ag, tag); err != nil {
			return chunkUnknown, err
		}
	}
	// The registry item lists the aggregate (GET /usage, billing). The writer of an aggregate's
	// first commit saw a head that was not a commit (an empty log, or only aborts of chunks whose
	// writers may never have written it), so writing it whenever the head is not a commit puts it
	// before the first commit, and costs nothing once the log holds a commit.
	if ag.h.op != opCommit {
		reg := usageRegItem{PK: regPK(ag.a.Key.Period), SK: ag.a.TenantPath + ag.a.Key.SubscriptionID + "#" + ag.a.Key.SKU, Kind: regKind,
			TenantID: ag.a.TenantID, TenantPath: ag.a.TenantPath, Sub: ag.a.Key.SubscriptionID, SKU: ag.a.Key.SKU, Period: ag.a.Key.Period.String()}
		var cc dynamo.ConsumedCapacity
		err := u.table.Put(reg).ConsumedCapacity(&cc).Run(ctx)
		u.write(&cc, reg, err)
		if err != nil {
			return chunkUnknown, err
		}
	}
	h := ag.h
	skip := map[string]bool{}
	done := func(st chunkState) (chunkState, error) {
		if ag.a.Closing && st == chunkCommitted {
			if err := u.clearPending(ctx, ag.a.TenantID, ag.a.Key, tag); err != nil {
				// The increment is in; ResolvePending clears the tag later.
				return st, nil
			}
		}
		return st, nil
	}
	for attempt := range 40 {
		next := h.total.Add(delta)
		it := usageLogItem{PK: aggPK(ag.key), SK: logSK(h.seq + 1), Kind: logKind, Op: opCommit, Chunk: r.chunk,
			Delta: delta.String(), Total: next.String(), N: len(ag.claimed), Late: ag.a.Late, At: r.now.UnixMilli()}
		var crossed []money.Decimal
		for _, t := range usage.Crossed(ag.a.Thresholds, h.total, next) {
			if !skip[t.String()] {
				crossed = append(crossed, t)
			}
		}
		var err error
		entryFailed := false
		if len(crossed) == 0 {
			err = u.appendLog(ctx, it)
			entryFailed = dynamo.IsCondCheckFailed(err)
		} else {
			tx := u.db.WriteTx().Put(u.table.Put(it).If("attribute_not_exists(PK)"))
			items := []any{it}
			for _, t := range crossed {
				ev, evErr := usage.ThresholdEvent(ag.a, t, next, r.now)
				if evErr != nil {
					return chunkUnknown, evErr
				}
				tx.Put(eventPut(u.table, ev))
				items = append(items, eventRecord(ev))
			}
			err = tx.Run(ctx)
			u.tx(items...)
			failed := failedAt(err)
			entryFailed = failed[0]
			for k, t := range crossed {
				if failed[k+1] {
					skip[t.String()] = true // already written: thresholds fire once
				}
			}
			if err != nil && !entryFailed && len(failed) > 0 {
				continue
			}
			if isTxConflict(err) {
				time.Sleep(time.Duration(attempt+1) * 10 * time.Millisecond)
				continue
			}
		}
		switch {
		case err == nil:
			return done(chunkCommitted)
		case !entryFailed:
			return chunkUnknown, err
		}
		// The sequence number is taken: read what came after our head.
		st, nh, err := u.scan(ctx, ag.key, r.chunk, h.seq)
		if err != nil {
			return chunkUnknown, err
		}
		if st != chunkUnknown {
			return done(st)
		}
		h = nh
	}
	return chunkUnknown, errors.New("usage log: too much contention")
}

// flag records, before the increment is written, that an aggregate of a closing or invoiced
// period changes (billing's to-do list).
func (r *run) flag(ctx context.Context, ag *aggRun, tag string) error {
	u := r.u
	k := ag.a.Key
	up := u.table.Update("PK", flagPK(ag.a.TenantID)).Range("SK", flagSK(k)).
		Set("Kind", flagKind).Set("TenantID", ag.a.TenantID).Set("TenantPath", ag.a.TenantPath).
		Set("Sub", k.SubscriptionID).Set("SKU", k.SKU).Set("Period", k.Period.String()).Set("UpdatedAt", r.now).
		AddStringsToSet("Pending", tag).Add("Version", 1)
	if ag.a.Late {
		up.Set("Late", true)
	} else {
		up.SetIfNotExists("Late", false)
	}
	var cc dynamo.ConsumedCapacity
	err := up.ConsumedCapacity(&cc).Run(ctx)
	u.write(&cc, usageFlagItem{PK: flagPK(ag.a.TenantID), SK: flagSK(k), Kind: flagKind, TenantID: ag.a.TenantID, TenantPath: ag.a.TenantPath,
		Sub: k.SubscriptionID, SKU: k.SKU, Period: k.Period.String(), Pending: []string{tag}, Late: ag.a.Late, Version: 1, UpdatedAt: r.now}, err)
	return err
}

// Totals implements usage.Store: one strongly consistent read of each aggregate's log head.
func (u *Usage) Totals(ctx context.Context, keys []usage.AggregateKey) (map[usage.AggregateKey]usage.Total, error) {
	heads := make([]head, len(keys))
	errs := make([]error, len(keys))
	parallel(len(keys), u.Concurrency, func(i int) { heads[i], errs[i] = u.readHead(ctx, keys[i].String()) })
	out := make(map[usage.AggregateKey]usage.Total, len(keys))
	for i, k := range keys {
		if errs[i] != nil {
			return nil, apperr.Wrap(errs[i], "usage totals")
		}
		if heads[i].seq > 0 {
			out[k] = usage.Total{Quantity: heads[i].total, Seq: heads[i].seq}
		}
	}
	return out, nil
}

// Aggregates implements usage.Store: one query of the period's registry, begins_with the prefix.
// The read is strongly consistent: billing lists a tenant's usage with it after reading the
// tenant's flags and acknowledges those flags, so a registry item written a moment before (the
// first commit of an aggregate in the last seconds of a period) that an eventually consistent
// read missed would be acknowledged unbilled.
func (u *Usage) Aggregates(ctx context.Context, p period.Period, prefix string) ([]usage.AggregateRef, error) {
	var items []usageRegItem
	var cc dynamo.ConsumedCapacity
	err := u.table.Get("PK", regPK(p)).Range("SK", dynamo.BeginsWith, prefix).Consistent(true).ConsumedCapacity(&cc).All(ctx, &items)
	u.read(&cc)
	if err != nil {
		return nil, apperr.Wrap(err, "usage aggregates")
	}
	out := make([]usage.AggregateRef, 0, len(items))
	for _, it := range items {
		per, err := period.Parse(it.Period)
		if err != nil {
			return nil, apperr.Wrap(err, "usage aggregate period")
		}
		out = append(out, usage.AggregateRef{Key: usage.AggregateKey{SubscriptionID: it.Sub, SKU: it.SKU, Period: per},
			TenantID: it.TenantID, TenantPath: it.TenantPath})
	}
	return out, nil
}

func (it usageFlagItem) change() (usage.Change, error) {
	per, err := period.Parse(it.Period)
	if err != nil {
		return usage.Change{}, err
	}
	return usage.Change{Key: usage.AggregateKey{SubscriptionID: it.Sub, SKU: it.SKU, Period: per}, TenantID: it.TenantID,
		TenantPath: it.TenantPath, Late: it.Late, Pending: it.Pending, Version: it.Version, UpdatedAt: it.UpdatedAt}, nil
}

func (u *Usage) flags(ctx context.Context, tenantID string) ([]usageFlagItem, error) {
	var items []usageFlagItem
	err := u.table.Get("PK", flagPK(tenantID)).Consistent(true).All(ctx, &items)
	return items, err
}

// Changes implements usage.Store: one query of the tenant's flags, oldest period first.
func (u *Usage) Changes(ctx context.Context, tenantID string) ([]usage.Change, error) {
	items, err := u.flags(ctx, tenantID)
	if err != nil {
		return nil, apperr.Wrap(err, "usage changes")
	}
	out := make([]usage.Change, 0, len(items))
	for _, it := range items {
		c, err := it.change()
		if err != nil {
			return nil, apperr.Wrap(err, "usage change period")
		}
		out = append(out, c)
	}
	return out, nil
}

// ResolvePending implements usage.Store.
func (u *Usage) ResolvePending(ctx context.Context, tenantID string) (int, error) {
	items, err := u.flags(ctx, tenantID)
	if err != nil {
		return 0, apperr.Wrap(err, "usage changes")
	}
	left := 0
	now := u.now()
	for _, it := range items {
		c, err := it.change()
		if err != nil {
			return 0, apperr.Wrap(err, "usage change period")
		}
		still := false
		for _, tag := range it.Pending {
			chunk, n0, at, ok := pendingParts(tag)
			if !ok {
				if err := u.clearPending(ctx, tenantID, c.Key, tag); err != nil {
					return 0, apperr.Wrap(err, "clear pending")
				}
				continue
			}
			st, _, err := u.scan(ctx, c.Key.String(), chunk, n0)
			if err != nil {
				return 0, apperr.Wrap(err, "usage log")
			}
			if st == chunkUnknown {
				if now.Sub(at) < u.Grace {
					still = true
					continue
				}
				if _, err := u.abort(ctx, c.Key.String(), chunk, n0, "", ""); err != nil {
					return 0, apperr.Wrap(err, "abort chunk")
				}
			}
			if err := u.clearPending(ctx, tenantID, c.Key, tag); err != nil {
				return 0, apperr.Wrap(err, "clear pending")
			}
		}
		if still {
			left++
		}
	}
	return left, nil
}

// AcknowledgeChange implements usage.Store.
func (u *Usage) AcknowledgeChange(ctx context.Context, tenantID string, key usage.AggregateKey, version int64) error {
	err := u.table.Delete("PK", flagPK(tenantID)).Range("SK", flagSK(key)).
		If("attribute_exists(PK) AND 'Version' = ? AND attribute_not_exists('Pending')", version).Run(ctx)
	if dynamo.IsCondCheckFailed(err) {
		return apperr.New(apperr.Conflict, "usage_changed", "The aggregate changed meanwhile; read it again.")
	}
	return apperr.Wrap(err, "acknowledge usage change")
}

var _ usage.Store = (*Usage)(nil)
