package config

// Defaults of the limits that Load and Parse apply. The options below
// change them.
const (
	// DefaultMaxFileSize is the largest config file Load reads, in bytes
	// (4 MiB). Each file is held in memory whole while it is parsed, and a
	// hand-written Istio config is a few KiB; a bigger file is a log or a
	// dump saved as .yaml by mistake, or an attack on the control plane's
	// memory.
	DefaultMaxFileSize int64 = 4 << 20
)

// Option changes a limit of Load or Parse.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	maxFileSize int64
}

func newOptions(opts []Option) options {
	o := options{
		maxFileSize: DefaultMaxFileSize,
	}
	for _, opt := range opts {
		opt.apply(&o)
	}
	return o
}

// WithMaxFileSize sets the largest file Load reads, in bytes. A larger
// file is an error that names it. Default DefaultMaxFileSize (4 MiB); n <= 0
// means the default.
func WithMaxFileSize(n int64) Option {
	return optionFunc(func(o *options) {
		o.maxFileSize = DefaultMaxFileSize
		if n > 0 {
			o.maxFileSize = n
		}
	})
}
