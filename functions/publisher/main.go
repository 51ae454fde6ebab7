// Command publisher is the outbox publisher (SPEC 13): a Lambda function fed by the table's
// DynamoDB stream (event source mapping with ReportBatchItemFailures) that puts every outbox
// event on the EventBridge bus CMS_EVENT_BUS. See shared/publisher and docs/events.md.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/channelbilling/cms/shared/app"
)

func main() {
	pub, err := app.PublisherFromLambdaEnv(context.Background())
	if err != nil {
		slog.Error("start", "err", err)
		os.Exit(1)
	}
	lambda.Start(pub.Handle)
}
