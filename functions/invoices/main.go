// Command invoices is the Lambda function serving the invoices routes behind API Gateway (REST API,
// proxy integration). See routes.Invoices for what it serves.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/routes"
)

func main() {
	handler, err := app.HTTPFunction(context.Background(), routes.FnInvoices)
	if err != nil {
		slog.Error("start", "function", "invoices", "err", err)
		os.Exit(1)
	}
	lambda.Start(handler)
}
