// Command usagequeue is the usage queue consumer: an SQS event source mapping with
// ReportBatchItemFailures feeds it the usage queue's messages (one record or {"records": [...]});
// invalid records go to the dead-letter queue CMS_USAGE_DLQ. See usagelambda.Queue.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/channelbilling/cms/shared/app"
)

func main() {
	c, err := app.UsageFromLambdaEnv(context.Background())
	if err != nil {
		slog.Error("start", "function", "usagequeue", "err", err)
		os.Exit(1)
	}
	lambda.Start(c.Queue.Handle)
}
