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

	// DefaultMaxRegexLength is the longest regular expression a config may
	// hold, in bytes of source (1 KiB, the length Istio's own validation
	// allows). Every client compiles every regex it is sent, so a long one
	// costs memory and matching time in each process of the mesh.
	DefaultMaxRegexLength = 1024

	// DefaultMaxRegexProgramSize is the largest program a regular
	// expression may compile to, counted in the instructions of Go's
	// regexp/syntax (Parse with syntax.Perl, Simplify, Compile), the
	// engine that meshlet's clients and gRPC-Go match with. It plays the
	// part of Envoy's RE2 max_program_size, whose default error level is
	// 100 RE2 units and which Envoy control planes commonly raise to about
	// 1000. A Go instruction is coarser than an RE2 one (one per rune or
	// character class, where RE2 spends several on UTF-8 ranges). Typical
	// regexes are far below the limit: ^/api/v[0-9]+/.* is 14
	// instructions, a path with a UUID in it about 60, and
	// /static/[a-zA-Z0-9._-]{0,200}/[a-zA-Z0-9._-]{0,200} 811. What it
	// refuses is counted repetition that adds up, such as .{0,1000}
	// (2002 instructions), a hundred of which fit in 1 KiB. (Go's parser
	// itself refuses nested counts whose product is over 1000, such as
	// (a{1000}){1000}.)
	DefaultMaxRegexProgramSize = 1000
)

// Option changes a limit of Load or Parse.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	maxFileSize         int64
	maxRegexLength      int
	maxRegexProgramSize int
	skipped             func(Skipped) // WithSkipped
}

func newOptions(opts []Option) options {
	o := options{
		maxFileSize:         DefaultMaxFileSize,
		maxRegexLength:      DefaultMaxRegexLength,
		maxRegexProgramSize: DefaultMaxRegexProgramSize,
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

// WithMaxRegexLength sets the longest regular expression accepted, in
// bytes. Default DefaultMaxRegexLength (1024); n <= 0 means the default.
func WithMaxRegexLength(n int) Option {
	return optionFunc(func(o *options) {
		o.maxRegexLength = DefaultMaxRegexLength
		if n > 0 {
			o.maxRegexLength = n
		}
	})
}

// WithMaxRegexProgramSize sets the largest program, in regexp/syntax
// instructions, that a regular expression may compile to. Default
// DefaultMaxRegexProgramSize (1000); n <= 0 means the default.
func WithMaxRegexProgramSize(n int) Option {
	return optionFunc(func(o *options) {
		o.maxRegexProgramSize = DefaultMaxRegexProgramSize
		if n > 0 {
			o.maxRegexProgramSize = n
		}
	})
}
