package config

import "strings"

// FieldError is one problem in the configuration. Load and Parse return
// every FieldError they find, joined with errors.Join; find them with
// errors.As.
type FieldError struct {
	// File is the path of the file, relative to the directory given to Load.
	File string
	// Resource is the resource in the form "Kind namespace/name" (see
	// model.Meta.String). It names the document ("document 2") when the
	// resource cannot be identified, and is empty for file-level errors.
	Resource string
	// Path is the field path, such as "spec.http[0].mirror". It is empty
	// when the problem is with the whole resource or file.
	Path string
	// Reason says what is wrong and what would fix it.
	Reason string
}

// Error gives "file: resource: path: reason", leaving out empty parts.
func (e *FieldError) Error() string {
	parts := make([]string, 0, 4)
	for _, p := range []string{e.File, e.Resource, e.Path, e.Reason} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, ": ")
}
