#!/usr/bin/python3
# Regenerates bad/*.conf: each is a valid base file with one change, and
# "# expect: LINE: message" header lines naming every error cfg_load must
# report (the file's own path is the prefix).  Run from this directory.
BASE = [
    "[marketplace]",
    "url = https://mp.example.com/public/v1",
    "token_file = marketplace-token",
    "[microsoft]",
    "tenant = contoso.onmicrosoft.com",
    "client_id = 11111111-2222-3333-4444-555555555555",
    "client_secret_file = pc-secret",
    "[mail]",
    "smtp_url = smtps://smtp.example.com:465",
    "from = CSP orders <partnerd@example.com>",
    "to = admin@example.com",
]

# name: (description, {base line index: replacement}, extra lines, [(where, message)])
# where: ("x", i) = i-th extra line, ("b", i) = base line i, 0 = file-wide.
CASES = {
    "products": ("bad product id", {}, ["[marketplace]", "products = PRD-1, PRD 2"],
                 [(("x", 1), "[marketplace] products: invalid product id 'PRD 2'")]),
    "url-hosts": ("bad host in url_hosts", {}, ["url_hosts = admin.microsoft.com, evil_host"],
                  [(("x", 0), "[mail] url_hosts: invalid host name 'evil_host'")]),
    "boolean": ("bad boolean", {}, ["notify_order_contacts = perhaps"],
                [(("x", 0), "[mail] notify_order_contacts: invalid boolean 'perhaps' (use yes or no)")]),
    "empty-value": ("empty value", {}, ["cc ="],
                    [(("x", 0), "[mail] cc: empty value")]),
    "empty-list-entry": ("trailing comma", {}, ["cc = a@example.com,"],
                         [(("x", 0), "[mail] cc: empty entry in list")]),
    "tab-in-value": ("a TAB inside a value", {}, ["cc = a@example.com\t, b@example.com"],
                     [(("x", 0), "[mail] cc: control character in value")]),
    "username-alone": ("username without password_file", {}, ["username = me@example.com"],
                       [(("x", 0), "[mail] username: set without password_file")]),
    "password-alone": ("password_file without username", {}, ["password_file = smtp-password"],
                       [(("x", 0), "[mail] password_file: set without username")]),
    "token-endpoint": ("bad token_endpoint", {}, ["[microsoft]", "token_endpoint = v3"],
                       [(("x", 1), "[microsoft] token_endpoint: invalid value 'v3' (use v1 or v2)")]),
    "connect-timeout": ("connect_timeout above http_timeout", {},
                        ["[daemon]", "http_timeout = 5s", "connect_timeout = 10s"],
                        [(("x", 2), "[daemon] connect_timeout: longer than http_timeout")]),
    "section-unclosed": ("section header without ']'", {}, ["[daemon"],
                         [(("x", 0), "invalid section header '[daemon' (missing ']')")]),
    "section-trailing": ("text after a section header", {}, ["[daemon] x"],
                         [(("x", 0), "unexpected text after section header [daemon]")]),
    "no-equals": ("a line without '='", {}, ["just words"],
                  [(("x", 0), "expected 'key = value'")]),
    "no-key": ("'=' without a key", {}, ["= value"],
               [(("x", 0), "missing key before '='")]),
    "url-invalid": ("not a URL", {}, ["[microsoft]", "api_url = not a url"],
                    [(("x", 1), "[microsoft] api_url: not a valid URL: 'not a url'")]),
    "url-ftp": ("wrong scheme", {}, ["[microsoft]", "api_url = ftp://files.example.com/"],
                [(("x", 1), "[microsoft] api_url: must be an https:// URL: 'ftp://files.example.com/'")]),
    "url-http-remote": ("plaintext to a remote host", {},
                        ["[microsoft]", "login_url = http://login.example.com"],
                        [(("x", 1), "[microsoft] login_url: http:// is only allowed to a loopback host; use https://: 'http://login.example.com'")]),
    "url-http-lookalike": ("a name that starts like a loopback address", {},
                           ["[microsoft]", "login_url = http://127.0.0.1.example.com"],
                           [(("x", 1), "[microsoft] login_url: http:// is only allowed to a loopback host; use https://: 'http://127.0.0.1.example.com'")]),
    "url-query": ("query in a base URL", {}, ["[microsoft]", "login_url = https://login.example.com?x=1"],
                  [(("x", 1), "[microsoft] login_url: a query or fragment is not allowed: 'https://login.example.com?x=1'")]),
    "url-no-scheme": ("URL without a scheme", {}, ["[marketplace]", "portal_url = portal.example.com"],
                      [(("x", 1), "[marketplace] portal_url: not a valid URL: 'portal.example.com'")]),
    "smtp-url-https": ("smtp_url with an https scheme", {8: "smtp_url = https://mail.example.com"}, [],
                       [(("b", 8), "[mail] smtp_url: must be smtps:// or smtp:// (STARTTLS): 'https://mail.example.com'")]),
    "tenant-path": ("tenant that would change the token URL path", {4: "tenant = contoso/../common"}, [],
                    [(("b", 4), "[microsoft] tenant: not a tenant id or domain name: 'contoso/../common'")]),
    "client-id-space": ("client_id with a space", {5: "client_id = abc def"}, [],
                        [(("b", 5), "[microsoft] client_id: only printable ASCII without spaces allowed: 'abc def'")]),
    "max-parallel": ("max_parallel out of range", {}, ["[daemon]", "max_parallel = 0"],
                     [(("x", 1), "[daemon] max_parallel: 0 out of range (1..256)")]),
    "retention": ("retention out of range", {}, ["[daemon]", "retention = 10min"],
                  [(("x", 1), "[daemon] retention: duration '10min' out of range (1h..3650d)")]),
    "state-dir-relative": ("relative state_dir", {}, ["[daemon]", "state_dir = state"],
                           [(("x", 1), "[daemon] state_dir: 'state' is not an absolute path")]),
    "deadline-short": ("deadline out of range", {}, ["deadline = 30s"],
                       [(("x", 0), "[mail] deadline: duration '30s' out of range (1min..90d)")]),
    "from-list": ("two addresses in from", {9: "from = a@example.com, b@example.com"}, [],
                  [(("b", 9), "[mail] from: invalid address 'a@example.com, b@example.com'")]),
    "unknown-section-keys": ("keys of an unknown section are not reported again", {},
                             ["[Mail]", "from = x", "bogus = 1"],
                             [(("x", 0), "unknown section [Mail]")]),
    "partner-id-twice": ("a partnerId listed by two accounts", {},
                         ["[microsoft]", "partner_ids = 3b33e682-00c3-41ee-9dd2-a548adf56438",
                          "[microsoft.brazil]", "tenant = softwareone-br.onmicrosoft.com",
                          "client_id = 8e2f4a6c-1b3d-4f5e-9a7c-0d2e4f6a8b1c", "client_secret_file = br-secret",
                          "partner_ids = 5c1e9a2b-7d4f-4e6a-9b3c-2f8d1a6e4b70, 3b33e682-00c3-41ee-9dd2-a548adf56438"],
                         [(("x", 6), "[microsoft.brazil] partner_ids: partnerId 3b33e682-00c3-41ee-9dd2-a548adf56438 is also listed in [microsoft] (line 15)")]),
    "account-name": ("an account name with upper case", {}, ["[microsoft.Brazil]", "tenant = x.onmicrosoft.com"],
                     [(("x", 0), "invalid account name in section [microsoft.Brazil] (use a-z, 0-9, '_' and '-', at most 32 characters, starting with a letter or digit)")]),
    "missing-everything-mail": ("an empty [mail] section", {8: "", 9: "", 10: ""}, [],
                                [(0, "[mail] from: missing required key"),
                                 (0, "[mail] to: missing required key"),
                                 (0, "[mail] smtp_url: missing required key (transport = smtp)")]),
}

for name, (desc, repl, extra, expect) in CASES.items():
    head = 1 + len(expect)
    def lineno(w):
        if w == 0:
            return 0
        kind, i = w
        return head + 1 + i + (len(BASE) if kind == "x" else 0)
    lines = [f"# {desc}"] + [f"# expect: {lineno(w)}: {m}" for w, m in expect]
    body = [repl.get(i, l) for i, l in enumerate(BASE)] + extra
    with open(f"bad/{name}.conf", "w") as f:
        f.write("\n".join(lines + body) + "\n")
