package config

import (
	"regexp/syntax"
)

// validateRegex reports a regular expression that is not RE2 syntax, or
// that is over the length or program-size limits of o. Every client
// compiles every regex it is sent, so the limits bound what one config
// can cost each process of the mesh.
func validateRegex(re, path string, o options, report reportFunc) {
	if len(re) > o.maxRegexLength {
		// Refused before it is parsed: parsing is linear, but a
		// megabyte of regex is a mistake however fast it parses.
		report.add(path, "%d bytes is over the %d-byte limit for a regular expression (shorten it; an exact or prefix match needs no regex)", len(re), o.maxRegexLength)
		return
	}
	// The flags of regexp.Compile, which clients use.
	parsed, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		report.add(path, "invalid regular expression (RE2 syntax): %v", err)
		return
	}
	if n := programSize(parsed.Simplify()); n > int64(o.maxRegexProgramSize) {
		report.add(path, "compiles to %d instructions, over the limit of %d (a counted repetition x{n} copies x n times: lower the counts, or match with exact or prefix)", n, o.maxRegexProgramSize)
	}
}

// programSize returns the number of instructions, len(Prog.Inst), that
// syntax.Compile makes of re, a simplified regexp, without compiling it:
// Simplify expands x{1000} into a thousand references to one x, which
// costs little, but Compile emits x's instructions a thousand times, so
// compiling (a{1000}){1000} to count it would cost the memory the limit
// is there to save.
func programSize(re *syntax.Regexp) int64 {
	memo := map[*syntax.Regexp]frag{}
	return sat(sat(1, count(re, memo).n), 1) // InstFail first, InstMatch last
}

// frag is what syntax.Compile knows of a compiled fragment: its size,
// whether it can never match (the zero frag, which concatenation and
// alternation treat specially) and whether it can match the empty string.
type frag struct {
	n        int64
	fail     bool
	nullable bool
}

// count follows syntax.Compile (regexp/syntax/compile.go) op by op.
func count(re *syntax.Regexp, memo map[*syntax.Regexp]frag) frag {
	if f, ok := memo[re]; ok {
		return f
	}
	var f frag
	switch re.Op {
	case syntax.OpNoMatch:
		f = frag{fail: true}
	case syntax.OpEmptyMatch:
		f = frag{n: 1, nullable: true}
	case syntax.OpLiteral:
		f = frag{n: int64(len(re.Rune)), nullable: len(re.Rune) == 0}
		if len(re.Rune) == 0 {
			f.n = 1 // a Nop
		}
	case syntax.OpCharClass, syntax.OpAnyCharNotNL, syntax.OpAnyChar:
		f = frag{n: 1}
	case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		f = frag{n: 1, nullable: true}
	case syntax.OpCapture:
		sub := count(re.Sub[0], memo)
		f = frag{n: sat(sub.n, 2), fail: sub.fail, nullable: !sub.fail && sub.nullable}
	case syntax.OpStar:
		// A loop of one Alt; a nullable body is compiled as (x+)?, one
		// more Alt.
		sub := count(re.Sub[0], memo)
		f = frag{n: sat(sub.n, 1), nullable: true}
		if sub.nullable {
			f.n = sat(f.n, 1)
		}
	case syntax.OpPlus:
		sub := count(re.Sub[0], memo)
		f = frag{n: sat(sub.n, 1), fail: sub.fail, nullable: sub.nullable}
	case syntax.OpQuest:
		sub := count(re.Sub[0], memo)
		f = frag{n: sat(sub.n, 1), nullable: true}
	case syntax.OpConcat:
		if len(re.Sub) == 0 {
			f = frag{n: 1, nullable: true}
			break
		}
		f.nullable = true
		for _, s := range re.Sub {
			sub := count(s, memo)
			f.n = sat(f.n, sub.n)
			f.fail = f.fail || sub.fail
			f.nullable = f.nullable && sub.nullable
		}
		f.nullable = f.nullable && !f.fail
	case syntax.OpAlternate:
		// One Alt joins each branch that can match to those before it.
		f.fail = true
		for _, s := range re.Sub {
			sub := count(s, memo)
			f.n = sat(f.n, sub.n)
			if sub.fail {
				continue
			}
			if !f.fail {
				f.n = sat(f.n, 1)
			}
			f.fail = false
			f.nullable = f.nullable || sub.nullable
		}
	default:
		// Simplify leaves no other op (OpRepeat is expanded); count
		// what is there rather than nothing.
		f.n = 1
		for _, s := range re.Sub {
			f.n = sat(f.n, count(s, memo).n)
		}
	}
	memo[re] = f
	return f
}

// maxCount bounds the counts: a regex the parser accepts stays far below
// it, and no sum overflows.
const maxCount = 1 << 40

// sat adds two counts, saturating at maxCount.
func sat(a, b int64) int64 {
	return min(a+b, maxCount)
}
