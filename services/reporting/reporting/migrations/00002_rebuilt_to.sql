-- Where a rebuild (brokerflow replay) stopped reading each stream. A service switching to the
-- rebuilt database catches it up from here to the stream's end, whatever any replica wrote to it
-- meanwhile. Empty in a database the service made itself. Not a table of the read model: it is
-- not exported, and a replay at another time writes other values.

-- +goose Up
CREATE TABLE rebuilt_to (
    stream   TEXT   NOT NULL PRIMARY KEY,
    last_seq BIGINT NOT NULL
);

-- +goose Down
DROP TABLE rebuilt_to;
