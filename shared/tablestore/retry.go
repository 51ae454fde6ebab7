package tablestore

import (
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/guregu/dynamo/v2"
)

// Retry settings of the DynamoDB client. Parallel creates under one parent all add to the
// parent's counters in their transactions, and DynamoDB cancels a transaction that meets another
// one on an item with TransactionConflict: without a retry a valid create would answer 409. Eight
// attempts with full jitter between 20 ms and 1 s spread 20 racing writers apart in well under the
// 29 s that an API call may last (the backoffs add up to at most about 2.3 s).
const (
	RetryMaxAttempts = 8
	retryBaseDelay   = 20 * time.Millisecond
	retryMaxDelay    = time.Second
)

// NewRetryer returns the retryer of every DynamoDB client of the platform: the SDK's standard
// retryer (throttling, 5xx, network errors) that also retries transactions cancelled only by
// TransactionConflict (dynamo.RetryTxConflicts: a cancellation with ConditionalCheckFailed is an
// answer, never retried). Retries are bounded by RetryMaxAttempts, so the client-side retry
// quota is off: a burst of conflicts must not exhaust it and turn the next conflicts into errors.
func NewRetryer() aws.Retryer {
	return retry.NewStandard(dynamo.RetryTxConflicts, func(o *retry.StandardOptions) {
		o.MaxAttempts = RetryMaxAttempts
		o.MaxBackoff = retryMaxDelay
		o.Backoff = retry.BackoffDelayerFunc(backoff)
		o.RateLimiter = ratelimit.None
	})
}

// backoff is full jitter over an exponential window: the SDK's own jitter has a floor of one
// second per step, far too slow for a conflict that clears in milliseconds.
func backoff(attempt int, _ error) (time.Duration, error) {
	window := retryBaseDelay << min(max(attempt-1, 0), 16)
	if window > retryMaxDelay {
		window = retryMaxDelay
	}
	return time.Duration(rand.Int64N(int64(window)) + 1), nil
}

// withRetryer sets the platform's retryer on a DynamoDB client.
func withRetryer(o *dynamodb.Options) { o.Retryer = NewRetryer() }
