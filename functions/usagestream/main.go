// Command usagestream is the usage stream consumer: a Kinesis event source mapping with
// ReportBatchItemFailures feeds it the usage stream's records (one usage record each); invalid
// records go to the dead-letter queue CMS_USAGE_DLQ. See usagelambda.Stream.
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
		slog.Error("start", "function", "usagestream", "err", err)
		os.Exit(1)
	}
	lambda.Start(c.Stream.Handle)
}
