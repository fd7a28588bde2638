import sys
from twisted.internet import reactor
listen_tcp = reactor.listenTCP
def loopback_only(port, factory, backlog=50, interface=''):
    return listen_tcp(port, factory, backlog, '127.0.0.1')
reactor.listenTCP = loopback_only
from autobahntestsuite import wstest
sys.argv[0] = 'wstest'
wstest.run()
