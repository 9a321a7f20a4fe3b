package runner

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/train"
)

// remote is an s3:// output of `hpa train`: training writes to a local directory that is
// uploaded when the run finishes.
type remote struct {
	client *s3.Client
	out    objstore.URL
	local  string
}

// stageIO downloads s3:// training data into the cache and points the output at a local
// directory mirroring an s3:// destination (pre-filled with what is already there, so a restarted
// run resumes). Local paths pass through untouched.
func stageIO(ctx context.Context, o Options, c *train.Config, log io.Writer) (*remote, error) {
	if !objstore.IsURL(c.DataDir) && !objstore.IsURL(c.OutDir) {
		return nil, nil
	}
	client, err := objstore.NewClient(ctx, o.S3)
	if err != nil {
		return nil, err
	}
	cache := o.CacheDir
	if objstore.IsURL(c.DataDir) {
		u, err := objstore.ParseURL(c.DataDir)
		if err != nil {
			return nil, err
		}
		local := filepath.Join(cache, "train-data", u.Bucket, filepath.FromSlash(u.Prefix))
		n, err := objstore.Download(ctx, client, u, local)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(log, "data: %d objects from %s in %s\n", n, u, local)
		c.DataDir = local
	}
	if !objstore.IsURL(c.OutDir) {
		return nil, nil
	}
	u, err := objstore.ParseURL(c.OutDir)
	if err != nil {
		return nil, err
	}
	local := filepath.Join(cache, "train-out", u.Bucket, filepath.FromSlash(u.Prefix))
	if _, err := objstore.Download(ctx, client, u, local); err != nil {
		return nil, err
	}
	c.OutDir = local
	return &remote{client: client, out: u, local: local}, nil
}

func (r *remote) upload(ctx context.Context, log io.Writer) error {
	// Checkpoints stay in the local cache (a restart on this node resumes from them); the model set goes up.
	n, err := objstore.Upload(ctx, r.client, r.local, r.out, "checkpoints")
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "uploaded %d files to %s\n", n, r.out)
	return nil
}
