"""Paper plans for hardware this machine does not have (``fsgen plan``): memory, KV capacity,
communication and predicted batch-1 decode speed of a large model at TP=N beside a small one."""
