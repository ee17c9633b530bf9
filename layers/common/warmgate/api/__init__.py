"""The functions' edges: HTTP bodies, errors and answers, the list API's cursor, and the
worker's time-boxed SQS batch."""
