"""What crosses between processes: frames of JSON (:mod:`.framing`), every message kind
with its check (:mod:`.messages`), and the codecs of values, exceptions and specs. Data
only: nothing that comes out of a container is ever unpickled."""
