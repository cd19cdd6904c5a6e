package sinks

import "net/url"

// The --sink schemes and their writers.
func init() {
	ch := func(u *url.URL, env Env) (Writer, error) { return NewClickHouse(u, env) }
	registerWriter("clickhouse", ch)
	registerWriter("clickhouse+http", ch)
	registerWriter("redis", func(u *url.URL, env Env) (Writer, error) { return NewRedis(u, env) })
	registerWriter("ws", func(u *url.URL, env Env) (Writer, error) { return NewWSServer(u, env) })
	registerWriter("nats", func(u *url.URL, env Env) (Writer, error) { return NewNATS(u, env) })
	registerWriter("sns", func(u *url.URL, env Env) (Writer, error) { return NewSNS(u, env) })
}
