package tablestore_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/tablestore"
)

func cancelled(codes ...string) error {
	e := &types.TransactionCanceledException{Message: aws.String("Transaction cancelled")}
	for _, c := range codes {
		e.CancellationReasons = append(e.CancellationReasons, types.CancellationReason{Code: aws.String(c)})
	}
	return e
}

func TestRetryerDecision(t *testing.T) {
	r := tablestore.NewRetryer()
	cases := []struct {
		name  string
		err   error
		retry bool
	}{
		{"OKTransactionConflict", cancelled("None", "TransactionConflict", "None"), true},
		{"OKThrottledItem", cancelled("ThrottlingError"), true},
		{"ErrConditionalCheckFailed", cancelled("None", "ConditionalCheckFailed"), false},
		// A condition that failed is the answer, even when another item also conflicted.
		{"ErrConditionAndConflict", cancelled("TransactionConflict", "ConditionalCheckFailed"), false},
		{"ErrValidation", cancelled("ValidationError"), false},
		{"ErrConditionalCheckFailedException", &types.ConditionalCheckFailedException{Message: aws.String("no")}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := r.IsErrorRetryable(c.err); got != c.retry {
				t.Fatalf("retryable = %v, want %v", got, c.retry)
			}
		})
	}
	if r.MaxAttempts() != tablestore.RetryMaxAttempts {
		t.Fatalf("max attempts %d", r.MaxAttempts())
	}
	for attempt := 1; attempt < 20; attempt++ {
		d, err := r.RetryDelay(attempt, cancelled("TransactionConflict"))
		if err != nil || d <= 0 || d > time.Second {
			t.Fatalf("attempt %d: delay %v, %v", attempt, d, err)
		}
	}
}

// fakeDynamoDB answers TransactWriteItems with the cancellation reasons of answers[i] for the
// i-th call (the last one repeats), "" meaning success, and counts the calls.
func fakeDynamoDB(t *testing.T, answers ...string) (*tablestore.Store, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if op := r.Header.Get("X-Amz-Target"); op != "DynamoDB_20120810.TransactWriteItems" {
			t.Errorf("unexpected call %s", op)
		}
		n := int(calls.Add(1)) - 1
		a := answers[min(n, len(answers)-1)]
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		if a == "" {
			_, _ = io.WriteString(w, `{}`)
			return
		}
		var reasons []string
		for _, c := range strings.Split(a, ",") {
			reasons = append(reasons, `{"Code":"`+c+`"}`)
		}
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException",`+
			`"Message":"Transaction cancelled","CancellationReasons":[`+strings.Join(reasons, ",")+`]}`)
	}))
	t.Cleanup(srv.Close)
	cfg := aws.Config{Region: "eu-west-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("k", "s", "")}
	return tablestore.NewFromConfig(cfg, "cms"), &calls
}

func newDistributor() *hierarchy.Entity {
	return &hierarchy.Entity{ID: "dst_1", Type: access.Distributor, Name: "D", Status: "active", BillingID: "B-1",
		Parent: &hierarchy.Ref{Type: access.Platform, ID: access.PlatformID}, Path: "/platform/dst_1/"}
}

// The store every function builds (NewFromConfig) retries a transaction that DynamoDB cancelled
// for a TransactionConflict, and never one whose condition failed.
func TestStoreRetriesTransactionConflicts(t *testing.T) {
	ctx := context.Background()
	t.Run("OKConflictThenCommit", func(t *testing.T) {
		st, calls := fakeDynamoDB(t, "None,None,TransactionConflict", "TransactionConflict,None,None", "")
		if err := st.CreateEntity(ctx, newDistributor()); err != nil {
			t.Fatalf("a create that only met conflicts must commit on retry: %v", err)
		}
		if calls.Load() != 3 {
			t.Fatalf("%d calls, want 3", calls.Load())
		}
	})
	t.Run("ErrConditionNotRetried", func(t *testing.T) {
		st, calls := fakeDynamoDB(t, "None,ConditionalCheckFailed,None")
		err := st.CreateEntity(ctx, newDistributor())
		if ae := apperr.As(err); ae.Kind != apperr.Conflict || ae.Code != "billing_id_taken" {
			t.Fatalf("got %v", err)
		}
		if calls.Load() != 1 {
			t.Fatalf("a failed condition was retried: %d calls", calls.Load())
		}
	})
	t.Run("ErrConflictForever", func(t *testing.T) {
		st, calls := fakeDynamoDB(t, "None,None,TransactionConflict")
		err := st.CreateEntity(ctx, newDistributor())
		if ae := apperr.As(err); ae.Kind != apperr.Conflict || ae.Code != "concurrent_update" {
			t.Fatalf("got %v", err)
		}
		if calls.Load() != tablestore.RetryMaxAttempts {
			t.Fatalf("%d calls, want %d", calls.Load(), tablestore.RetryMaxAttempts)
		}
	})
}
