//! HTTP/1.1 framing for the cosocket transport: Lua moves bytes, this module builds requests and
//! parses responses (status line, headers, Content-Length, chunked, close-delimited bodies).
