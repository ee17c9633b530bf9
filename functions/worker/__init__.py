"""WorkerFunction: verifies each campaign event and starts, resumes, deletes or leaves it."""
