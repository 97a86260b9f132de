import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;
import javax.security.auth.callback.Callback;
import javax.security.auth.callback.UnsupportedCallbackException;
import javax.security.auth.login.AppConfigurationEntry;
import org.apache.kafka.common.security.auth.AuthenticateCallbackHandler;
import org.apache.kafka.common.security.oauthbearer.OAuthBearerToken;
import org.apache.kafka.common.security.oauthbearer.OAuthBearerTokenCallback;

/**
 * Test-only OAUTHBEARER login handler: hands the Java client a ready-made JWT read from the file named by
 * the JAAS option tokenFile (what a real deployment gets from its identity provider). The broker checks it.
 * Usage: sasl.login.callback.handler.class=OAuthFileLoginHandler and
 * sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required tokenFile="...";
 */
public class OAuthFileLoginHandler implements AuthenticateCallbackHandler {
    private String tokenFile;

    @Override
    public void configure(Map<String, ?> configs, String mechanism, List<AppConfigurationEntry> jaas) {
        tokenFile = (String) jaas.get(0).getOptions().get("tokenFile");
    }

    @Override
    public void handle(Callback[] callbacks) throws UnsupportedCallbackException {
        for (Callback cb : callbacks) {
            if (!(cb instanceof OAuthBearerTokenCallback)) throw new UnsupportedCallbackException(cb);
            String jwt;
            try {
                jwt = Files.readString(Path.of(tokenFile)).trim();
            } catch (java.io.IOException e) {
                throw new RuntimeException(e);
            }
            final String value = jwt;
            final long now = System.currentTimeMillis();
            ((OAuthBearerTokenCallback) cb).token(new OAuthBearerToken() {
                public String value() { return value; }
                public Set<String> scope() { return Set.of(); }
                public long lifetimeMs() { return now + 300_000; }
                public String principalName() { return "java-client"; }
                public Long startTimeMs() { return now; }
            });
        }
    }

    @Override
    public void close() {}
}
