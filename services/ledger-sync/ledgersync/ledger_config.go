package ledgersync

func (c *Config) resolveLedger() error { return nil }

func (c Config) validateLedger() error { return nil }
