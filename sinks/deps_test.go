package sinks

import _ "go.uber.org/goleak"
