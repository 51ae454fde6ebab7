// Command billingworker is the billing worker: an SQS event source mapping with
// ReportBatchItemFailures feeds it the billing queue (CMS_BILLING_QUEUE). A message starts a run
// (the EventBridge Scheduler schedule sends {"kind":"start"} at 00:05 UTC on the 1st), fans a
// run out to one message per tenant, invoices one tenant, or runs the commission run and the
// finance exports after a run. See billing.Service.Process and billingqueue.Worker.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/channelbilling/cms/shared/app"
)

func main() {
	d, err := app.BillingWorkerFromLambdaEnv(context.Background())
	if err != nil {
		slog.Error("start", "function", "billingworker", "err", err)
		os.Exit(1)
	}
	lambda.Start(d.BillingWorker().Handle)
}
