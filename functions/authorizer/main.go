// Command authorizer is the API Gateway Lambda authorizer (REQUEST type): it verifies the bearer
// token and passes the caller's role and scope to the resource functions.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/channelbilling/cms/shared/app"
)

func main() {
	deps, err := app.FromLambdaEnv(context.Background())
	if err != nil {
		slog.Error("start", "err", err)
		os.Exit(1)
	}
	lambda.Start(deps.Authorizer().Handle)
}
