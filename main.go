package main
import (
 _ "github.com/hashicorp/memberlist"
 _ "github.com/vmihailenco/msgpack/v5"
 _ "github.com/spf13/pflag"
 _ "go.uber.org/goleak"
 _ "github.com/prometheus/client_golang/prometheus"
)
func main(){}
