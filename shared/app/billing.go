package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/channelbilling/cms/shared/billing"
	"github.com/channelbilling/cms/shared/billingqueue"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/s3objects"
	"github.com/channelbilling/cms/shared/tablestore"
	"github.com/channelbilling/cms/shared/usage"
)

// wireBilling builds the billing service on the store, the usage store, the billing queue
// (CMS_BILLING_QUEUE, resolved on first use) and the exports bucket (CMS_EXPORTS_BUCKET).
func (d *Deps) wireBilling(awsCfg aws.Config) {
	d.Billing = &billing.Service{Store: d.Store, Entities: d.Store, Catalog: d.Store, Subscriptions: d.Store,
		Usage: &BillingUsage{Store: d.UsageStore}, Queue: billingqueue.New(sqs.NewFromConfig(awsCfg), d.Config.BillingQueue),
		Exports:          &ExportsBucket{Objects: &s3objects.Store{Client: s3.NewFromConfig(awsCfg, S3Options(awsCfg))}, Bucket: d.Config.ExportsBucket},
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

// ExportsBucket writes the finance exports to one S3 bucket (billing.Objects).
type ExportsBucket struct {
	Objects *s3objects.Store
	Bucket  string
}

// Put implements billing.Objects.
func (b *ExportsBucket) Put(ctx context.Context, key string, body []byte, contentType string) error {
	return b.Objects.Put(ctx, b.Bucket, key, body, contentType)
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
	cfg, err := FromEnv()
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("aws configuration: %w", err)
	}
	return NewBillingWorker(cfg, awsCfg, NewLogger(cfg.LogLevel))
}
