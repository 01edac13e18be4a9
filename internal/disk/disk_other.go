//go:build !unix

package disk

func usage(string) (Usage, error) { return Usage{}, ErrUnsupported }
