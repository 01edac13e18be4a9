package sync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	gosync "sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket names on the hub.
const (
	// AppsBucket is the KV bucket of signed releases, keyed by app name.
	AppsBucket = "tern-apps"
	// ArtifactsBucket is the object store of wasm modules, named by digest.
	ArtifactsBucket = "tern-artifacts"
)

// appsHistory is how many past releases the hub keeps per app; the fleet
// issue's rollback reads them.
const appsHistory = 16

// Errors callers branch on.
var (
	// ErrNotFound reports that the hub has no release for the asked app.
	ErrNotFound = errors.New("not found on hub")
	// ErrRaced reports that another publisher changed the app between the
	// read and the write of a deploy.
	ErrRaced = errors.New("release changed concurrently")
	// ErrAuth reports that the hub refused the connection's credentials
	// (or that it requires some and none were given).
	ErrAuth = errors.New("hub refused the credentials")
)

// ConnConfig says how to reach a hub.
type ConnConfig struct {
	// URL is the hub's client URL, e.g. nats://127.0.0.1:4222.
	URL string
	// CredsFile is a NATS credentials file (JWT and nkey seed); optional.
	CredsFile string
	// NKeyFile is a file holding an nkey seed; optional.
	NKeyFile string
	// Name identifies this connection in the hub's monitoring.
	Name string
	// Retry keeps trying to connect in the background when the hub is
	// unreachable instead of failing; agents set it, the CLI does not.
	Retry bool
	// Server, when set, connects in-process to this embedded server
	// (an agent's leaf node) instead of dialling URL.
	Server *Hub
	// Password, when set, authenticates as PublisherUser: for in-process
	// connections to an authenticating hub. (A URL may carry user and
	// password itself.)
	Password string
	// FleetDomain is the JetStream domain of the fleet bucket, where
	// heartbeats go: HubDomain for a leaf agent, "" when connected to the
	// hub itself.
	FleetDomain string
	Logger      *slog.Logger

	// noEcho keeps the connection from receiving its own messages.
	noEcho bool
}

// Client is a connection to a hub or to an agent's leaf node.
type Client struct {
	nc      *nats.Conn
	js      jetstream.JetStream // releases and modules
	fleetJS jetstream.JetStream // the hub's domain: heartbeats and modules
	logger  *slog.Logger

	// hbKV is the fleet bucket PublishHeartbeat last found, kept so that
	// a heartbeat is one put and not also a stream-info request, which
	// costs the hub more than the put (see PublishHeartbeat).
	hbMu gosync.Mutex
	hbKV jetstream.KeyValue

	// replies receives the answers to calls to other sites (see call).
	replies replies
	// leaf says the connection is to an agent's leaf node, whose calls to
	// other sites the hub relays.
	leaf bool
	// link reports the leaf node's hub connection coming up; nil when the
	// client is not an in-process client of a leaf node.
	link *link
}

// Connect connects to the hub described by cfg.
func Connect(cfg ConnConfig) (*Client, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("hub disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { logger.Info("hub reconnected", "url", nc.ConnectedUrlRedacted()) }),
		// Asynchronous errors go to the log, not to stderr; a closed
		// in-process pipe is the normal end of a shutdown.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if errors.Is(err, io.ErrClosedPipe) {
				logger.Debug("hub connection closed", "err", err)
				return
			}
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			logger.Warn("hub connection error", "subject", subject, "err", err)
		}),
	}
	if cfg.Retry {
		opts = append(opts, nats.RetryOnFailedConnect(true))
	}
	if cfg.noEcho {
		opts = append(opts, nats.NoEcho())
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.NKeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(cfg.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nkey %s: %w", cfg.NKeyFile, err)
		}
		opts = append(opts, o)
	}
	if cfg.Server != nil {
		opts = append(opts, nats.InProcessServer(cfg.Server.ns))
	}
	if cfg.Password != "" {
		opts = append(opts, nats.UserInfo(PublisherUser, cfg.Password))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
		return nil, fmt.Errorf("connect to hub %s: %w: %w", cfg.URL, ErrAuth, err)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to hub %s: %w", cfg.URL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream on %s: %w", cfg.URL, err)
	}
	fleetJS := js
	if cfg.FleetDomain != "" {
		if fleetJS, err = jetstream.NewWithDomain(nc, cfg.FleetDomain); err != nil {
			nc.Close()
			return nil, fmt.Errorf("jetstream domain %s: %w", cfg.FleetDomain, err)
		}
	}
	c := &Client{nc: nc, js: js, fleetJS: fleetJS, logger: logger, leaf: cfg.FleetDomain != ""}
	if cfg.Server != nil && c.leaf {
		c.link = cfg.Server.link
	}
	return c, nil
}

// Close drains the connection: pending messages are delivered first.
func (c *Client) Close() {
	if err := c.nc.Drain(); err != nil {
		c.nc.Close()
	}
}

// EnsureBuckets creates the hub's buckets when they do not exist yet, with
// replicas copies of each (0 means 1). Existing buckets are left as they
// are, so a publisher never changes a clustered hub's replication.
func (c *Client) EnsureBuckets(ctx context.Context, replicas int) error {
	replicas = max(replicas, 1)
	if _, err := c.js.KeyValue(ctx, AppsBucket); errors.Is(err, jetstream.ErrBucketNotFound) {
		_, err = c.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      AppsBucket,
			Description: "Tern signed releases by app",
			History:     appsHistory,
			Replicas:    replicas,
		})
		if err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return fmt.Errorf("create bucket %s: %w", AppsBucket, err)
		}
	} else if err != nil {
		return fmt.Errorf("bucket %s: %w", AppsBucket, err)
	}
	if _, err := c.js.ObjectStore(ctx, ArtifactsBucket); errors.Is(err, jetstream.ErrBucketNotFound) {
		_, err = c.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      ArtifactsBucket,
			Description: "Tern wasm modules by sha256 digest",
			Replicas:    replicas,
		})
		if err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return fmt.Errorf("create bucket %s: %w", ArtifactsBucket, err)
		}
	} else if err != nil {
		return fmt.Errorf("bucket %s: %w", ArtifactsBucket, err)
	}
	if _, err := c.js.KeyValue(ctx, RolloutsBucket); errors.Is(err, jetstream.ErrBucketNotFound) {
		_, err = c.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      RolloutsBucket,
			Description: "Tern staged rollouts by app",
			History:     appsHistory,
			Replicas:    replicas,
		})
		if err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return fmt.Errorf("create bucket %s: %w", RolloutsBucket, err)
		}
	} else if err != nil {
		return fmt.Errorf("bucket %s: %w", RolloutsBucket, err)
	}
	if _, err := c.js.KeyValue(ctx, TrustBucket); errors.Is(err, jetstream.ErrBucketNotFound) {
		_, err = c.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      TrustBucket,
			Description: "Tern root-signed publisher list",
			History:     appsHistory,
			Replicas:    replicas,
		})
		if err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return fmt.Errorf("create bucket %s: %w", TrustBucket, err)
		}
	} else if err != nil {
		return fmt.Errorf("bucket %s: %w", TrustBucket, err)
	}
	if _, err := c.fleet(ctx, false); errors.Is(err, jetstream.ErrBucketNotFound) {
		if _, err := c.createFleet(ctx, replicas); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if _, err := c.ensureJobQueue(ctx, replicas); err != nil {
		return err
	}
	return nil
}

// EnsureMirrors makes the release, rollout and trust buckets of this
// (leaf) server read-only mirrors of the hub's, so the agent's site keeps
// them while cut off from the hub, and catches up by itself when the link
// returns.
func (c *Client) EnsureMirrors(ctx context.Context) error {
	if _, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      AppsBucket,
		Description: "mirror of the hub's signed releases",
		History:     appsHistory,
		Mirror:      &jetstream.StreamSource{Name: AppsBucket, Domain: HubDomain},
	}); err != nil {
		return fmt.Errorf("mirror bucket %s: %w", AppsBucket, err)
	}
	if _, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      RolloutsBucket,
		Description: "mirror of the hub's staged rollouts",
		History:     appsHistory,
		Mirror:      &jetstream.StreamSource{Name: RolloutsBucket, Domain: HubDomain},
	}); err != nil {
		return fmt.Errorf("mirror bucket %s: %w", RolloutsBucket, err)
	}
	if _, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      TrustBucket,
		Description: "mirror of the hub's publisher list",
		History:     appsHistory,
		Mirror:      &jetstream.StreamSource{Name: TrustBucket, Domain: HubDomain},
	}); err != nil {
		return fmt.Errorf("mirror bucket %s: %w", TrustBucket, err)
	}
	// Modules are not mirrored: a site downloads from the hub only the
	// modules of the releases it installs, and keeps them in its own
	// store. Mirroring every module to every site cost each site a copy of
	// every version of every app, and the hub a send of each to every leaf.
	// Leaf nodes set up by earlier versions drop that mirror.
	stream := "OBJ_" + ArtifactsBucket
	if s, err := c.js.Stream(ctx, stream); err == nil {
		if s.CachedInfo().Config.Mirror != nil {
			if err := c.js.DeleteStream(ctx, stream); err != nil {
				return fmt.Errorf("remove module mirror %s: %w", stream, err)
			}
			c.logger.Info("removed the module mirror; modules are now downloaded on demand", "stream", stream)
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	return nil
}

// moduleStore is the hub's module bucket, seen two ways: as an object
// store for objects' metadata, and as the stream under it for chunks.
type moduleStore struct {
	obs    jetstream.ObjectStore
	stream jetstream.Stream
}

// modules returns the store modules are downloaded from: the hub's,
// through the leaf link when the client is an agent's leaf node.
func (c *Client) modules(ctx context.Context) (moduleStore, error) {
	obs, err := c.fleetJS.ObjectStore(ctx, ArtifactsBucket)
	if err != nil {
		return moduleStore{}, fmt.Errorf("bucket %s on the hub: %w", ArtifactsBucket, err)
	}
	stream, err := c.fleetJS.Stream(ctx, "OBJ_"+ArtifactsBucket)
	if err != nil {
		return moduleStore{}, fmt.Errorf("bucket %s on the hub: %w", ArtifactsBucket, err)
	}
	return moduleStore{obs: obs, stream: stream}, nil
}

// PutArtifact uploads size bytes from r under digest, unless the hub
// already holds an object of that name and size. progress, when not nil, is
// called with the number of bytes sent so far.
func (c *Client) PutArtifact(ctx context.Context, digest string, r io.Reader, size int64, progress func(sent int64)) error {
	obs, err := c.js.ObjectStore(ctx, ArtifactsBucket)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", ArtifactsBucket, err)
	}
	if info, err := obs.GetInfo(ctx, digest); err == nil && !info.Deleted && int64(info.Size) == size {
		if progress != nil {
			progress(size)
		}
		return nil
	}
	// A hub whose disk cannot take the module is asked first: on a full
	// disk JetStream acks nothing, and the upload would only time out.
	d, known, err := c.HubDisk(ctx)
	if err != nil {
		return fmt.Errorf("upload %s: %w", digest, err)
	}
	if known {
		if err := d.Fits(size); err != nil {
			return fmt.Errorf("upload %s: %w", digest, err)
		}
	}
	if progress != nil {
		r = &progressReader{r: r, fn: progress}
	}
	if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: digest}, r); err != nil {
		// Say why, when the hub knows: its disk filled meanwhile.
		if d, known, derr := c.HubDisk(ctx); derr == nil && known {
			if ferr := d.Fits(size); ferr != nil {
				return fmt.Errorf("upload %s: %w (%v)", digest, ferr, err)
			}
		}
		return fmt.Errorf("upload %s: %w", digest, err)
	}
	return nil
}

// Release returns the current signed release of app and its revision, or
// an error wrapping ErrNotFound.
func (c *Client) Release(ctx context.Context, app string) (envelope []byte, revision uint64, err error) {
	kv, err := c.js.KeyValue(ctx, AppsBucket)
	if err != nil {
		return nil, 0, fmt.Errorf("bucket %s: %w", AppsBucket, err)
	}
	e, err := kv.Get(ctx, app)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("release %s: %w", app, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("release %s: %w", app, err)
	}
	return e.Value(), e.Revision(), nil
}

// PutRelease stores envelope as app's current release, provided the
// current revision is still revision (0: app has no release yet).
// Otherwise it returns an error wrapping ErrRaced.
func (c *Client) PutRelease(ctx context.Context, app string, envelope []byte, revision uint64) error {
	kv, err := c.js.KeyValue(ctx, AppsBucket)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", AppsBucket, err)
	}
	if err := casPut(ctx, kv, app, envelope, revision); err != nil {
		return fmt.Errorf("release %s: %w", app, err)
	}
	return nil
}

// casPut writes value under key if the key is still at revision (0: the
// key must not exist), and otherwise fails with ErrRaced: the hub's
// buckets are written by several publishers and controllers at once.
func casPut(ctx context.Context, kv jetstream.KeyValue, key string, value []byte, revision uint64) error {
	var err error
	if revision == 0 {
		_, err = kv.Create(ctx, key, value)
	} else {
		_, err = kv.Update(ctx, key, value, revision)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return ErrRaced
	}
	return err
}

// follow calls fn with each entry w delivers (first the latest of every
// key, then changes as they come) and caughtUp, if not nil, once those
// latest ones have all come, until ctx is done or the watch ends; it
// stops w. bucket names the bucket in errors.
func follow(ctx context.Context, w jetstream.KeyWatcher, bucket string, fn func(jetstream.KeyValueEntry), caughtUp func()) error {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch %s: closed", bucket)
			}
			if e == nil {
				if caughtUp != nil {
					caughtUp()
				}
				continue
			}
			fn(e)
		}
	}
}

// Entry is one app's current release on the hub.
type Entry struct {
	App      string
	Envelope []byte
	Revision uint64
	Updated  time.Time
}

// Releases returns the current release of every app on the hub.
func (c *Client) Releases(ctx context.Context) ([]Entry, error) {
	kv, err := c.js.KeyValue(ctx, AppsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", AppsBucket, err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", AppsBucket, err)
	}
	defer w.Stop()
	var out []Entry
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("list %s: %w", AppsBucket, ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("list %s: watch closed", AppsBucket)
			}
			if e == nil {
				return out, nil
			}
			out = append(out, Entry{App: e.Key(), Envelope: e.Value(), Revision: e.Revision(), Updated: e.Created()})
		}
	}
}

type progressReader struct {
	r  io.Reader
	n  int64
	fn func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	p.fn(p.n)
	return n, err
}

// History returns the releases the hub still holds for app, oldest first
// (the bucket keeps the last appsHistory), or an error wrapping ErrNotFound.
func (c *Client) History(ctx context.Context, app string) ([]Entry, error) {
	kv, err := c.js.KeyValue(ctx, AppsBucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", AppsBucket, err)
	}
	es, err := kv.History(ctx, app, jetstream.IgnoreDeletes())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("history of %s: %w", app, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", app, err)
	}
	out := make([]Entry, 0, len(es))
	for _, e := range es {
		if e.Operation() == jetstream.KeyValuePut {
			out = append(out, Entry{App: e.Key(), Envelope: e.Value(), Revision: e.Revision(), Updated: e.Created()})
		}
	}
	return out, nil
}
