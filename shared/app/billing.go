package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/channelbilling/cms/shared/billing"
	"github.com/channelbilling/cms/shared/billingqueue"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/tablestore"
	"github.com/channelbilling/cms/shared/usage"
	"github.com/channelbilling/cms/shared/usagecatalog"
)

// wireBilling builds the billing service on the store, the usage store, the billing queue
// (CMS_BILLING_QUEUE, resolved on first use) and the exports bucket (CMS_EXPORTS_BUCKET).
func (d *Deps) wireBilling(awsCfg aws.Config) {
	d.Billing = &billing.Service{Store: d.Store, Entities: d.Store, Catalog: d.Store, Subscriptions: d.Store,
		Usage: &BillingUsage{Store: d.UsageStore}, Queue: billingqueue.New(sqs.NewFromConfig(awsCfg), d.Config.BillingQueue),
		Exports:          &ExportsBucket{Client: s3.NewFromConfig(awsCfg, S3Options(awsCfg)), Bucket: d.Config.ExportsBucket},
		PlatformCurrency: d.Config.PlatformCurrency, Log: d.Log}
}

// SetClock makes every service read time from now: the test harness and the benchmark use it
// to create catalog data effective in past periods and to bill periods as if they had just
// ended. Production never calls it.
func (d *Deps) SetClock(now func() time.Time) {
	if d.Hierarchy != nil {
		d.Hierarchy.Now, d.Catalog.Now, d.PriceLists.Now, d.Subscriptions.Now = now, now, now, now
	}
	if d.Usage != nil {
		d.Usage.Now = now
		// Usage's view of the catalog caches a tenant's subscriptions for a minute of its own
		// clock: on the real time, a GET /usage just after a plan change made days earlier on
		// this clock would price with the cached plan.
		if src, ok := d.Usage.Pricer.(*usagecatalog.Source); ok {
			src.Now = now
		}
	}
	if d.Billing != nil {
		d.Billing.Now = now
	}
}

// BillingUsage is billing's view of the usage store (billing.UsageSource on usage.Store).
type BillingUsage struct{ Store usage.Store }

func fromUsageKey(k usage.AggregateKey) billing.UsageKey {
	return billing.UsageKey{SubscriptionID: k.SubscriptionID, SKU: k.SKU, Period: k.Period}
}

func toUsageKey(k billing.UsageKey) usage.AggregateKey {
	return usage.AggregateKey{SubscriptionID: k.SubscriptionID, SKU: k.SKU, Period: k.Period}
}

// PeriodTotals implements billing.UsageSource: the period's aggregates under the tenant's path,
// then their totals.
func (u *BillingUsage) PeriodTotals(ctx context.Context, tenantPath string, p period.Period) ([]billing.UsageTotal, error) {
	refs, err := u.Store.Aggregates(ctx, p, tenantPath)
	if err != nil {
		return nil, err
	}
	keys := make([]usage.AggregateKey, 0, len(refs))
	for _, r := range refs {
		keys = append(keys, r.Key)
	}
	totals, err := u.Store.Totals(ctx, keys)
	if err != nil {
		return nil, err
	}
	out := make([]billing.UsageTotal, 0, len(keys))
	for _, k := range keys {
		if t, ok := totals[k]; ok && !t.Quantity.IsZero() {
			out = append(out, billing.UsageTotal{Key: fromUsageKey(k), Quantity: t.Quantity})
		}
	}
	return out, nil
}

// Totals implements billing.UsageSource.
func (u *BillingUsage) Totals(ctx context.Context, keys []billing.UsageKey) (map[billing.UsageKey]money.Decimal, error) {
	out := map[billing.UsageKey]money.Decimal{}
	if len(keys) == 0 {
		return out, nil
	}
	uk := make([]usage.AggregateKey, len(keys))
	for i, k := range keys {
		uk[i] = toUsageKey(k)
	}
	totals, err := u.Store.Totals(ctx, uk)
	if err != nil {
		return nil, err
	}
	for k, t := range totals {
		out[fromUsageKey(k)] = t.Quantity
	}
	return out, nil
}

// Changes implements billing.UsageSource.
func (u *BillingUsage) Changes(ctx context.Context, tenantID string) ([]billing.UsageChange, error) {
	cs, err := u.Store.Changes(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	out := make([]billing.UsageChange, 0, len(cs))
	for _, c := range cs {
		out = append(out, billing.UsageChange{Key: fromUsageKey(c.Key), Version: c.Version, Pending: len(c.Pending) > 0})
	}
	return out, nil
}

// Acknowledge implements billing.UsageSource.
func (u *BillingUsage) Acknowledge(ctx context.Context, tenantID string, c billing.UsageChange) error {
	return u.Store.AcknowledgeChange(ctx, tenantID, toUsageKey(c.Key), c.Version)
}

// ResolvePending implements billing.UsageSource.
func (u *BillingUsage) ResolvePending(ctx context.Context, tenantID string) (int, error) {
	return u.Store.ResolvePending(ctx, tenantID)
}

// ExportsAPI is the part of the S3 client the exports use (*s3.Client).
type ExportsAPI interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPart(ctx context.Context, in *s3.UploadPartInput, optFns ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
}

// DefaultExportPart is the part size of an export's multipart upload: what one export holds
// in memory while it is written.
const DefaultExportPart = 8 << 20

// ExportsBucket writes the finance exports to one S3 bucket (billing.Objects). An object is
// streamed: up to PartSize it is buffered and put whole at Commit; beyond, it becomes a
// multipart upload, PartSize bytes per part, completed at Commit. Either way S3 shows the new
// object only once it is complete, and an aborted one leaves the old object in place.
type ExportsBucket struct {
	Client ExportsAPI
	Bucket string
	// PartSize is the size of the parts (default DefaultExportPart; S3's minimum is 5 MiB).
	PartSize int
}

// Create implements billing.Objects.
func (b *ExportsBucket) Create(ctx context.Context, key, contentType string) (billing.ObjectWriter, error) {
	size := b.PartSize
	if size <= 0 {
		size = DefaultExportPart
	}
	return &exportObject{b: b, ctx: ctx, key: key, contentType: contentType, size: size}, nil
}

// exportObject is one object being written (billing.ObjectWriter).
type exportObject struct {
	b           *ExportsBucket
	ctx         context.Context
	key         string
	contentType string
	size        int

	buf      []byte
	uploadID string
	parts    []s3types.CompletedPart
	err      error
	done     bool
}

func (o *exportObject) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	if o.done {
		return 0, errors.New("export object already committed or aborted")
	}
	n := len(p)
	for len(p) > 0 {
		if o.buf == nil {
			o.buf = make([]byte, 0, o.size)
		}
		k := min(len(p), o.size-len(o.buf))
		o.buf = append(o.buf, p[:k]...)
		p = p[k:]
		if len(o.buf) == o.size {
			if o.err = o.flush(); o.err != nil {
				return n - len(p), o.err
			}
		}
	}
	return n, nil
}

// flush uploads the buffer as the next part, starting the multipart upload at the first.
func (o *exportObject) flush() error {
	if o.uploadID == "" {
		// CRC32 part checksums, as the SDK's upload manager does (and the SDK computes them).
		out, err := o.b.Client.CreateMultipartUpload(o.ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(o.b.Bucket), Key: aws.String(o.key),
			ContentType: aws.String(o.contentType), ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc32})
		if err != nil {
			return fmt.Errorf("start upload of %s: %w", o.key, err)
		}
		o.uploadID = aws.ToString(out.UploadId)
	}
	n := int32(len(o.parts) + 1)
	out, err := o.b.Client.UploadPart(o.ctx, &s3.UploadPartInput{Bucket: aws.String(o.b.Bucket), Key: aws.String(o.key), UploadId: aws.String(o.uploadID),
		PartNumber: aws.Int32(n), Body: bytes.NewReader(o.buf), ContentLength: aws.Int64(int64(len(o.buf))), ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc32})
	if err != nil {
		return fmt.Errorf("upload part %d of %s: %w", n, o.key, err)
	}
	o.parts = append(o.parts, s3types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n), ChecksumCRC32: out.ChecksumCRC32})
	o.buf = o.buf[:0]
	return nil
}

// Commit implements billing.ObjectWriter.
func (o *exportObject) Commit() error {
	if o.err != nil {
		return o.err
	}
	if o.done {
		return errors.New("export object already committed or aborted")
	}
	o.done = true
	if o.uploadID == "" {
		_, err := o.b.Client.PutObject(o.ctx, &s3.PutObjectInput{Bucket: aws.String(o.b.Bucket), Key: aws.String(o.key), Body: bytes.NewReader(o.buf),
			ContentType: aws.String(o.contentType), ContentLength: aws.Int64(int64(len(o.buf)))})
		return err
	}
	if len(o.buf) > 0 {
		if err := o.flush(); err != nil {
			o.abortUpload()
			return err
		}
	}
	_, err := o.b.Client.CompleteMultipartUpload(o.ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(o.b.Bucket), Key: aws.String(o.key),
		UploadId: aws.String(o.uploadID), MultipartUpload: &s3types.CompletedMultipartUpload{Parts: o.parts}})
	if err != nil {
		o.abortUpload()
		return fmt.Errorf("complete upload of %s: %w", o.key, err)
	}
	return nil
}

// Abort implements billing.ObjectWriter (nothing after Commit).
func (o *exportObject) Abort() {
	if o.done {
		return
	}
	o.done = true
	o.abortUpload()
}

// abortUpload drops the parts uploaded, best effort: a bucket lifecycle rule for incomplete
// multipart uploads removes what this leaves.
func (o *exportObject) abortUpload() {
	o.buf = nil
	if o.uploadID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(o.ctx), 5*time.Second)
	defer cancel()
	_, _ = o.b.Client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(o.b.Bucket), Key: aws.String(o.key),
		UploadId: aws.String(o.uploadID)})
}

// BillingWorker returns the billing worker's SQS handler on deps.
func (d *Deps) BillingWorker() *billingqueue.Worker {
	return &billingqueue.Worker{Billing: d.Billing, Log: d.Log}
}

// NewBillingWorker builds what the billingworker function needs: the table store, the usage
// store, the billing queue and the exports bucket (no secret is read: it serves no HTTP).
func NewBillingWorker(cfg Config, awsCfg aws.Config, log *slog.Logger, ddbOpts ...func(*dynamodb.Options)) (*Deps, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = NewLogger(cfg.LogLevel)
	}
	d := &Deps{Config: cfg, Log: log, Store: tablestore.NewFromConfig(awsCfg, cfg.Table, ddbOpts...)}
	d.wireUsage()
	d.wireBilling(awsCfg)
	return d, nil
}

// BillingWorkerFromLambdaEnv builds the billing worker of the Lambda function: configuration
// from the environment, AWS credentials from the default chain. It fails fast on bad
// configuration.
func BillingWorkerFromLambdaEnv(ctx context.Context) (*Deps, error) {
	cfg, awsCfg, err := lambdaEnv(ctx)
	if err != nil {
		return nil, err
	}
	return NewBillingWorker(cfg, awsCfg, NewLogger(cfg.LogLevel))
}
