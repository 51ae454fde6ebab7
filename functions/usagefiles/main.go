// Command usagefiles is the usage file-drop function: S3 object-created notifications of the usage
// bucket (prefix usage/) trigger it; it reads each CSV or JSON Lines file (gzip or not), counts
// its records and writes a report object under reports/. See usagelambda.Files.
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
		slog.Error("start", "function", "usagefiles", "err", err)
		os.Exit(1)
	}
	lambda.Start(c.Files.Handle)
}
