// Package s3objects reads and writes objects in S3 for the usage file drops: it opens a
// dropped file as a stream and writes its report.
package s3objects

import (
	"bytes"
	"context"
	"errors"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/channelbilling/cms/shared/apperr"
)

// API is the part of the S3 client the adapter uses (*s3.Client).
type API interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// Store reads and writes objects.
type Store struct{ Client API }

// Open returns the object's content as a stream; the caller closes it. NotFound when the object
// does not exist (deleted since its event was sent).
func (s *Store) Open(ctx context.Context, bucket, key string) (io.ReadCloser, error) {
	out, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	var nsk *types.NoSuchKey
	if errors.As(err, &nsk) {
		return nil, apperr.NotFoundf("No such object.")
	}
	if err != nil {
		return nil, err
	}
	return out.Body, nil
}

// Put writes an object.
func (s *Store) Put(ctx context.Context, bucket, key string, body []byte, contentType string) error {
	_, err := s.Client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
		Body: bytes.NewReader(body), ContentType: aws.String(contentType), ContentLength: aws.Int64(int64(len(body)))})
	return err
}
