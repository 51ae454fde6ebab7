package feeders

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// State is what a running `make local` tells the local tools (the dead-letter CLI): where its
// emulators listen and the names of the usage resources. It is written at start and removed at
// stop.
type State struct {
	AWSEndpoint      string `json:"awsEndpoint"`
	DynamoDBEndpoint string `json:"dynamoDBEndpoint"`
	Region           string `json:"region"`
	Table            string `json:"table"`
	UsageQueueURL    string `json:"usageQueueUrl"`
	UsageDLQURL      string `json:"usageDlqUrl"`
	UsageBucket      string `json:"usageBucket"`
	UsageStream      string `json:"usageStream"`
}

// StatePath is the state file: $CMS_CACHE_DIR/local-stack.json, or .cache/local-stack.json in
// the working directory (the repository root under make).
func StatePath() string {
	dir := os.Getenv("CMS_CACHE_DIR")
	if dir == "" {
		dir = ".cache"
	}
	return filepath.Join(dir, "local-stack.json")
}

// WriteState writes the state file; the returned function removes it.
func WriteState(s State) (remove func(), err error) {
	path := StatePath()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, err
	}
	return func() { _ = os.Remove(path) }, nil
}

// ReadState reads the state file of a running `make local`. It fails when there is none.
func ReadState() (State, error) {
	var s State
	b, err := os.ReadFile(StatePath())
	if errors.Is(err, os.ErrNotExist) {
		return s, fmt.Errorf("no %s: start `make local` first, or set AWS_ENDPOINT_URL (or CMS_USE_AWS=1) and CMS_USAGE_DLQ", StatePath())
	}
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}
