wrk.method="POST"
wrk.body='{"data": {"_arg1": [1, 2, 3], "_arg2": [3, -1, 5]}, "script": "return [x + y for x, y in zip(_arg1, _arg2)]"}'
wrk.headers["Content-Type"]="application/json"
