"""The only I/O with the outside: blob storage, callback delivery and the callback URL
policy. Nothing here knows about models or stems."""
